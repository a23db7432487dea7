/*
 * settings — the server's configuration, declared once in a table (name, type, bounds, default,
 * environment variable) and read from, in rising precedence: defaults, the `--config FILE` YAML,
 * ALMANAC_* environment variables, command-line flags. Errors read `file:line:col: key: reason`
 * (or `--flag: reason`, `ALMANAC_X: reason`); unknown keys are errors; a load applies all or
 * nothing. Secrets are never given as values here: only the paths of files that hold them.
 */
#ifndef ALMANAC_SETTINGS_H
#define ALMANAC_SETTINGS_H

#include "reposet.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

typedef struct settings {
    char *repo;                 /* --repo URI (required) */
    bool ui;                    /* --ui / --no-ui: the console at /ui/, default on */
    unsigned port;              /* --port, default 8888; 0 picks a free port */
    char *listen;               /* --listen address, default 0.0.0.0 */
    char *cache_dir;            /* --cache-dir: $XDG_CACHE_HOME/almanac, ~/.cache/almanac, /tmp */
    char *default_label;        /* --default-label, NULL: main, falling back to master */
    char *search_paths;         /* --search-paths, comma-separated, may hold {application} ... */
    unsigned refresh_interval;  /* --refresh-interval seconds, 0 = never poll; default 30 */
    unsigned max_mirrors;       /* --max-mirrors: mirrors of placeholder repositories, 64 */
    unsigned mirror_miss_seconds; /* --mirror-miss-seconds a failed clone is remembered, 60 */
    repo_specs repos;           /* the config file's repos: section, in file order */
    unsigned git_timeout;       /* --git-timeout seconds a fetch may take, default 60 */
    bool git_allow_insecure_http; /* --git-allow-insecure-http: a password over plain http:// */
    char *git_ca_file;          /* --git-ca-file: PEM CAs added to the system's for https:// */
    char *git_proxy;            /* --git-proxy URL; NULL: https_proxy/http_proxy/all_proxy */
    char *git_known_hosts;      /* --git-known-hosts FILE; NULL: ~/.ssh/known_hosts */
    char *git_ssh_key_file;     /* --git-ssh-key-file (ALMANAC_GIT_SSH_KEY_FILE); NULL: agent */
    bool verify_commits;        /* --verify-commits: serve only commits signed by an allowed signer */
    char *allowed_signers;      /* --allowed-signers FILE (Git's gpg.ssh.allowedSignersFile format) */
    char *encrypt_key_file;     /* --encrypt-key-file */
    char *encrypt_salt;         /* --encrypt-salt hex, default "deadbeef" */
    char *encrypt_rsa_key_file; /* --encrypt-rsa-key-file (PEM) */
    char *encrypt_keys_dir;     /* --encrypt-keys-dir: named keys for rotation ({key:NAME}) */
    char *encrypt_format;       /* --encrypt-format almanac|spring, default almanac */
    char *auth_file;            /* --auth-file */
    char *tls_cert;             /* --tls-cert */
    char *tls_key;              /* --tls-key */
    char *webhook_secret;       /* --webhook-secret: path of a file holding the secret */
    char *peers;                /* --peers NAME[:PORT],...: replicas told to fetch */
    char *peer_secret;          /* --peer-secret: path of a file holding the shared secret */
    char *bus_amqp_url;         /* --bus-amqp-url amqp[s]://user:pass@host:port/vhost */
    char *bus_destination;      /* --bus-destination, the exchange, default springCloudBus */
    char *bus_id;               /* --bus-id, originService; NULL: almanac:PORT:<random> */
    char *bus_ca_file;          /* --bus-ca-file: CA certificates for amqps:// */
    char *cloud_platform;       /* --cloud-platform auto|none|kubernetes|…, default auto */
    char *overrides_file;       /* --overrides-file: YAML or .properties of server-wide overrides */
    char *log_format;           /* --log-format text|json, default text */
    char *broken_file;          /* --broken-file last-good|error, default last-good */
    char *log_level;            /* --log-level debug|info|warn|error, default info */
    char *config_file;          /* --config FILE */
    unsigned threads;           /* --threads, HTTP worker threads, default: number of CPUs */
    unsigned max_connections;   /* --max-connections, default 4096 */
    unsigned max_connections_per_ip; /* --max-connections-per-ip, default 256 */
    unsigned max_watchers_per_ip; /* --max-watchers-per-ip, parked watch requests, 1024 */
    unsigned idle_timeout;      /* --idle-timeout seconds a connection may stay silent, 60 */
    size_t max_header_bytes;    /* --max-header-bytes, a connection's request head, 36 KiB */
    unsigned auth_failures_per_minute; /* --auth-failures-per-minute per address, 30; 0: off */
    size_t max_body_bytes;      /* --max-body-bytes, default 1 MiB */
    size_t max_file_bytes;      /* --max-file-bytes, largest repository file read, default 4 MiB */
    unsigned snapshot_cache;    /* --snapshot-cache, parsed commits kept, default 16 */
    size_t response_cache_bytes;/* --response-cache-bytes, default 64 MiB */
    unsigned watch_timeout_max; /* --watch-timeout-max seconds, default 300 */
} settings;

/*
 * Fills *out from defaults, the config file, the environment (envp NULL: the process's) and
 * argv (argv[0] is skipped). 0 on success; ERR_CONFIG (ERR_NOMEM) with a one-line message in
 * err_message() (err.h). On failure *out is left disposed. `--help` returns 1 after printing
 * usage to stdout.
 */
int settings_load(settings *out, int argc, char **argv, char **envp);
void settings_dispose(settings *s);
void settings_usage(FILE *to);

#endif
