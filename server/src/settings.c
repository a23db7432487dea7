/*
 * settings — the server's configuration from defaults, a YAML file, the environment and argv.
 *
 * Every setting is declared once, in `setting_defs` below: its flag name (which is also its key
 * in the config file, and, upper-cased with `-` turned to `_` behind `ALMANAC_`, its environment
 * variable), its type and bounds, its default as text (parsed by the same code as any other
 * value, so a default can never escape its own bounds), its help line and where it lives in
 * `struct settings`. Usage text and docs/configuration.md follow this table.
 *
 * This module only reads and checks values. It does not open the files the settings name (keys,
 * auth file, TLS material), so it never sees a secret; the modules that use them do that.
 * It parses the config file through yamlconf and never includes <yaml.h>.
 */
#include "settings.h"

#include "confdoc.h"
#include "err.h"
#include "fileread.h"
#include "reposet.h"
#include "scalar.h"
#include "yamlconf.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

extern char **environ;

#define PROGRAM_NAME "almanac-server"
#define VALUE_MAX_LEN 4096         /* any one value: a path or a URI */
#define CONFIG_FILE_MAX (1u << 20) /* a settings file is a few dozen lines */
#define ECHO_MAX 64                /* how much of a bad value or key an error repeats */
#define PATH_ECHO_MAX 240          /* and of a file name */

typedef enum {
    SET_STRING, /* any text; empty unsets an optional one */
    SET_UINT,   /* decimal unsigned integer within [min, max] */
    SET_SIZE,   /* bytes, optionally with a k, M or G (binary) suffix, within [min, max] */
    SET_ENUM,   /* one of `choices`, case-insensitive, stored as spelled in the table */
    SET_HEX,    /* non-empty, even-length hexadecimal text */
    SET_BOOL,   /* true/false (yes/no, on/off, 1/0); `--name` alone is true, `--no-name` false */
} setting_type;

enum {
    SET_NONEMPTY = 1u << 0,    /* a string that may not be empty */
    SET_LIST = 1u << 1,        /* a file may give a YAML list; items are joined with commas */
    SET_NOT_IN_FILE = 1u << 2, /* meaningless inside the config file (`config` itself) */
    SET_NO_PASSWORD_ARGV = 1u << 3, /* a URL carrying a password is refused on the command line */
};

typedef struct setting_def {
    const char *name; /* flag `--name`, file key `name`, env ALMANAC_NAME */
    setting_type type;
    size_t offset;       /* into struct settings */
    const char *metavar; /* shown in usage */
    const char *def;     /* default as text; NULL: none, or computed (cache-dir, threads) */
    unsigned long long min, max;
    const char *const *choices; /* SET_ENUM: NULL-terminated */
    unsigned flags;
    const char *help;
} setting_def;

static const char *const encrypt_formats[] = {"almanac", "spring", NULL};
static const char *const log_formats[] = {"text", "json", NULL};
static const char *const broken_file_modes[] = {"last-good", "error", NULL};
static const char *const log_levels[] = {"debug", "info", "warn", "error", NULL};
static const char *const cloud_platforms[] = {
    "auto", "none", "kubernetes", "cloud-foundry", "heroku", "sap", "nomad", "azure-app-service",
    "aws-ecs", NULL};

#define KIB 1024ull
#define MIB (1024ull * KIB)
#define GIB (1024ull * MIB)

#define FIELD(f) offsetof(settings, f)
/* clang-format off */
#define STR(n, f, mv, d, fl, h) {n, SET_STRING, FIELD(f), mv, d, 0, 0, NULL, fl, h}
#define UINT(n, f, mv, d, lo, hi, h) {n, SET_UINT, FIELD(f), mv, d, lo, hi, NULL, 0, h}
#define SIZE(n, f, d, lo, hi, h) {n, SET_SIZE, FIELD(f), "BYTES", d, lo, hi, NULL, 0, h}
#define ENUM(n, f, d, c, h) {n, SET_ENUM, FIELD(f), NULL, d, 0, 0, c, 0, h}
#define BOOL(n, f, d, h) {n, SET_BOOL, FIELD(f), NULL, d, 0, 0, NULL, 0, h}
/* clang-format on */

static const setting_def setting_defs[] = {
    STR("repo", repo, "URI", NULL, SET_NONEMPTY | SET_NO_PASSWORD_ARGV,
        "Configuration repository: https://, ssh://, file:// URI, a local Git path, or dir:PATH "
        "for a plain directory. Required."),
    UINT("port", port, "PORT", "8888", 0, 65535, "TCP port to listen on; 0 picks a free one."),
    STR("listen", listen, "ADDRESS", "0.0.0.0", SET_NONEMPTY, "Address to listen on."),
    STR("cache-dir", cache_dir, "DIR", NULL, SET_NONEMPTY,
        "Where the bare mirror of the repository is kept."),
    STR("default-label", default_label, "LABEL", NULL, 0,
        "Label served when a request names none. Default: main, falling back to master."),
    STR("search-paths", search_paths, "PATHS", NULL, SET_LIST,
        "Comma-separated folders of the repository searched for configuration files; may use "
        "{application}, {profile} and {label}. Default: the repository root."),
    UINT("refresh-interval", refresh_interval, "SECONDS", "30", 0, 86400,
         "How often the remote is polled for new commits; 0 never polls."),
    UINT("max-mirrors", max_mirrors, "N", "64", 1, 100000,
         "Mirrors a repository whose uri holds {application}, {profile} or {label} (repos: in "
         "--config) may keep; the least recently used one is removed from disk past it."),
    UINT("mirror-miss-seconds", mirror_miss_seconds, "SECONDS", "60", 0, 86400,
         "How long a placeholder repository that could not be cloned is answered as empty "
         "before the remote is asked again."),
    UINT("git-timeout", git_timeout, "SECONDS", "60", 1, 3600,
         "Longest a fetch from the remote may take, connecting included; a fetch past it is "
         "abandoned and retried at the next refresh."),
    BOOL("git-allow-insecure-http", git_allow_insecure_http, "false",
         "Allow sending the Git password (ALMANAC_GIT_PASSWORD_FILE) over plain http://."),
    STR("git-ca-file", git_ca_file, "FILE", NULL, 0,
        "PEM CA certificates trusted for an https:// remote besides the system's."),
    STR("git-proxy", git_proxy, "URL", NULL, SET_NO_PASSWORD_ARGV,
        "Proxy for http(s):// remotes (http://host:port). Default: https_proxy, http_proxy or "
        "all_proxy from the environment; no_proxy is honoured either way."),
    STR("git-known-hosts", git_known_hosts, "FILE", NULL, 0,
        "OpenSSH known_hosts file that an ssh:// remote's host key must be in (hashed entries "
        "too). Default: ~/.ssh/known_hosts."),
    STR("git-ssh-key-file", git_ssh_key_file, "FILE", NULL, 0,
        "Private key (without passphrase) for an ssh:// remote. Default: ssh-agent."),
    BOOL("verify-commits", verify_commits, "false",
         "Serve only commits with an SSH signature (git commit -S, gpg.format=ssh) by a key of "
         "--allowed-signers; a branch whose new tip does not verify stays on its last verified "
         "commit."),
    STR("allowed-signers", allowed_signers, "FILE", NULL, 0,
        "Allowed signers file (ssh-keygen's ALLOWED SIGNERS format, as Git's "
        "gpg.ssh.allowedSignersFile) for --verify-commits."),
    STR("encrypt-key-file", encrypt_key_file, "FILE", NULL, 0,
        "File holding the symmetric key for {cipher} values."),
    {"encrypt-salt", SET_HEX, FIELD(encrypt_salt), "HEX", "deadbeef", 0, 0, NULL, 0,
     "Salt of the symmetric key derivation, in hex (Spring's default)."},
    STR("encrypt-rsa-key-file", encrypt_rsa_key_file, "FILE", NULL, 0,
        "PEM file holding an RSA private key for {cipher} values."),
    STR("encrypt-keys-dir", encrypt_keys_dir, "DIR", NULL, 0,
        "Folder of named keys, chosen by a {key:NAME} prefix, for key rotation."),
    ENUM("encrypt-format", encrypt_format, "almanac", encrypt_formats,
         "Format /encrypt writes; both are always read."),
    STR("auth-file", auth_file, "FILE", NULL, 0,
        "YAML file of users and tokens; without it the server is open."),
    UINT("auth-failures-per-minute", auth_failures_per_minute, "N", "30", 0, 1000000,
         "Failed authentication attempts allowed from one address per minute; past it the "
         "address gets 429 until the minute ends. 0: no limit."),
    STR("tls-cert", tls_cert, "FILE", NULL, 0,
        "PEM certificate chain; enables HTTPS with --tls-key."),
    STR("tls-key", tls_key, "FILE", NULL, 0, "PEM private key of --tls-cert."),
    STR("webhook-secret", webhook_secret, "FILE", NULL, 0,
        "File holding the secret that signs POST /monitor webhooks."),
    STR("peers", peers, "NAME[:PORT]", NULL, SET_LIST,
        "Other replicas told to fetch at once after a webhook or a new commit: a headless "
        "Service's DNS name (resolved for every notice) or a comma-separated list; the port "
        "defaults to this server's. Needs --peer-secret."),
    STR("peer-secret", peer_secret, "FILE", NULL, 0,
        "File holding the secret shared by the replicas; signs and checks peer notices."),
    STR("bus-amqp-url", bus_amqp_url, "URL", NULL, SET_NO_PASSWORD_ARGV,
        "Spring Cloud Bus over RabbitMQ: amqp://user:pass@host:port/vhost or amqps://. A URL "
        "with a password is taken from ALMANAC_BUS_AMQP_URL or the --config file only."),
    STR("bus-destination", bus_destination, "NAME", "springCloudBus", SET_NONEMPTY,
        "The bus exchange (Spring's spring.cloud.bus.destination)."),
    STR("bus-id", bus_id, "ID", NULL, 0,
        "This replica's bus id (originService); default almanac:PORT:<random hex>."),
    STR("bus-ca-file", bus_ca_file, "FILE", NULL, 0,
        "PEM CA certificates that verify an amqps:// broker; default: the system's."),
    ENUM("cloud-platform", cloud_platform, "auto", cloud_platforms,
         "Platform that spring.config.activate.on-cloud-platform documents are judged against "
         "(Spring's spring.main.cloud-platform); auto detects it from the environment as "
         "Spring Boot does (KUBERNETES_SERVICE_HOST/_PORT, VCAP_APPLICATION, ...)."),
    STR("overrides-file", overrides_file, "FILE", NULL, 0,
        "YAML or .properties file of properties that override every application's."),
    BOOL("ui", ui, "true", "The read-only web console at /ui/ (--no-ui turns it off)."),
    ENUM("log-format", log_format, "text", log_formats, "Log lines on stderr as text or JSON."),
    ENUM("broken-file", broken_file, "last-good", broken_file_modes,
         "A file that does not parse: serve its Environment from the last commit where it composed "
         "(last-good) or answer 500 (error)."),
    ENUM("log-level", log_level, "info", log_levels, "Least severe level logged."),
    STR("config", config_file, "FILE", NULL, SET_NOT_IN_FILE,
        "YAML file of settings (keys are the flag names); the environment and flags override it."),
    UINT("threads", threads, "N", NULL, 1, 1024, "HTTP worker threads."),
    /* A fleet: thousands of instances, each holding a long poll. 16384 parked watchers cost
     * about 8 MiB here and a few tens in the kernel; see docs/performance.md. */
    UINT("max-connections", max_connections, "N", "16384", 1, 1000000,
         "Concurrent connections, long-polling watchers included (and as many parked watchers)."),
    UINT("max-connections-per-ip", max_connections_per_ip, "N", "256", 1, 1000000,
         "Concurrent connections from one address; more are closed at once."),
    UINT("max-watchers-per-ip", max_watchers_per_ip, "N", "1024", 1, 1000000,
         "Parked watch requests from one address; more get 429."),
    UINT("idle-timeout", idle_timeout, "SECONDS", "60", 1, 86400,
         "How long a connection may stay silent (idle keep-alive, or a client sending slowly) "
         "before it is closed."),
    /* Above 32 KiB libmicrohttpd maps each connection's pool with mmap and unmaps it when the
     * connection closes; at or below, the pool comes from the heap, where the short-lived
     * pools of connection bursts get interleaved with long-lived allocations (such as parked
     * watchers) and resident memory grows. Hence 36k, not 32k. */
    SIZE("max-header-bytes", max_header_bytes, "36k", 8 * KIB, MIB,
         "Memory for one connection's request line and headers; a larger request head is "
         "refused (431)."),
    SIZE("max-body-bytes", max_body_bytes, "1M", KIB, GIB, "Largest request body accepted."),
    SIZE("max-file-bytes", max_file_bytes, "4M", KIB, GIB, "Largest repository file read."),
    UINT("snapshot-cache", snapshot_cache, "N", "16", 1, 1024,
         "Parsed commits kept in memory (LRU)."),
    SIZE("response-cache-bytes", response_cache_bytes, "64M", 0, 64 * GIB,
         "Memory for rendered responses; 0 disables the cache."),
    UINT("watch-timeout-max", watch_timeout_max, "SECONDS", "300", 1, 86400,
         "Longest ?timeout= a watch request may ask for."),
};

#define SETTING_COUNT (sizeof(setting_defs) / sizeof(setting_defs[0]))

static void *field_of(settings *s, const setting_def *d)
{
    return (char *)s + d->offset;
}

static bool holds_string(const setting_def *d)
{
    return d->type == SET_STRING || d->type == SET_ENUM || d->type == SET_HEX;
}

static const setting_def *find_def(const char *name, size_t len)
{
    for (size_t i = 0; i < SETTING_COUNT; i++) {
        if (strlen(setting_defs[i].name) == len && memcmp(setting_defs[i].name, name, len) == 0)
            return &setting_defs[i];
    }
    return NULL;
}

/* Case and '_' versus '-' are the commonest slips in a setting's name. */
static int fold(char c)
{
    return c == '_' ? '-' : tolower((unsigned char)c);
}

/*
 * The setting whose name is within two edits of name[0..len) (Levenshtein distance), for a
 * "did you mean" hint; NULL if none is that close. Names are short, so the table is small.
 */
static const setting_def *closest_def(const char *name, size_t len)
{
    enum { MAX = 40 };
    const setting_def *best = NULL;
    size_t best_distance = 3;
    if (len == 0 || len >= MAX)
        return NULL;
    for (size_t i = 0; i < SETTING_COUNT; i++) {
        const char *cand = setting_defs[i].name;
        size_t clen = strlen(cand), row[MAX], diag;
        if (clen >= MAX)
            continue;
        for (size_t j = 0; j <= clen; j++)
            row[j] = j;
        for (size_t k = 1; k <= len; k++) {
            diag = row[0];
            row[0] = k;
            for (size_t j = 1; j <= clen; j++) {
                size_t up = row[j];
                size_t cost = diag + (fold(name[k - 1]) == fold(cand[j - 1]) ? 0 : 1);
                size_t best_here = up + 1 < row[j - 1] + 1 ? up + 1 : row[j - 1] + 1;
                row[j] = cost < best_here ? cost : best_here;
                diag = up;
            }
        }
        if (row[clen] < best_distance) {
            best_distance = row[clen];
            best = &setting_defs[i];
        }
    }
    return best;
}

/* " (did you mean PREFIXname?)" or "", for the end of an error about an unknown name. */
static void hint(char *buf, size_t size, const char *prefix, const char *name, size_t len)
{
    const setting_def *d = closest_def(name, len);
    if (d != NULL)
        snprintf(buf, size, " (did you mean %s%s?)", prefix, d->name);
    else if (size > 0)
        buf[0] = '\0';
}

/* "ALMANAC_" + NAME upper-cased, '-' -> '_'. Every name is short, so buf of 64 always fits. */
static void env_name(const setting_def *d, char *buf, size_t size)
{
    int n = snprintf(buf, size, "ALMANAC_%s", d->name);
    for (char *p = buf + 8; n > 0 && *p != '\0'; p++)
        *p = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
}

static const char *env_get(char **envp, const char *name)
{
    size_t len = strlen(name);
    for (char **e = envp; e != NULL && *e != NULL; e++) {
        if (strncmp(*e, name, len) == 0 && (*e)[len] == '=')
            return *e + len + 1;
    }
    return NULL;
}

/*
 * Text fit to repeat in an error: printable ASCII only ('?' for the rest), cut to size - 4 bytes
 * with "..." after, so the size of buf sets how much is repeated.
 */
static void echo(char *buf, size_t size, const char *text)
{
    size_t n = 0;
    for (; text[n] != '\0' && n + 4 < size; n++) {
        unsigned char c = (unsigned char)text[n];
        buf[n] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    if (text[n] != '\0') {
        memcpy(buf + n, "...", 3);
        n += 3;
    }
    buf[n] = '\0';
}


/* Digits only: no sign, no blanks, no base prefix. -1 on anything else or overflow. */
static int parse_digits(const char *text, size_t len, unsigned long long *out)
{
    unsigned long long v = 0;
    if (len == 0)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (text[i] < '0' || text[i] > '9')
            return -1;
        unsigned digit = (unsigned)(text[i] - '0');
        if (v > (ULLONG_MAX - digit) / 10)
            return -1;
        v = v * 10 + digit;
    }
    *out = v;
    return 0;
}

static int parse_size(const char *text, unsigned long long *out)
{
    size_t len = strlen(text);
    unsigned long long unit = 1, v;
    if (len > 0) {
        switch (text[len - 1]) {
        case 'k':
        case 'K':
            unit = KIB;
            break;
        case 'm':
        case 'M':
            unit = MIB;
            break;
        case 'g':
        case 'G':
            unit = GIB;
            break;
        default:
            break;
        }
    }
    if (unit != 1)
        len--;
    if (parse_digits(text, len, &v) < 0 || v > ULLONG_MAX / unit)
        return -1;
    *out = v * unit;
    return 0;
}

static void format_size(char *buf, size_t size, unsigned long long v)
{
    if (v != 0 && v % GIB == 0)
        snprintf(buf, size, "%lluG", v / GIB);
    else if (v != 0 && v % MIB == 0)
        snprintf(buf, size, "%lluM", v / MIB);
    else if (v != 0 && v % KIB == 0)
        snprintf(buf, size, "%lluk", v / KIB);
    else
        snprintf(buf, size, "%llu", v);
}

static int set_string(settings *s, const setting_def *d, const char *value)
{
    char **slot = field_of(s, d);
    char *copy = NULL;
    if (value != NULL && (copy = strdup(value)) == NULL)
        return -1;
    free(*slot);
    *slot = copy;
    return 0;
}

/* The choices of an enum setting, joined by sep. */
static void choice_list(const setting_def *d, const char *sep, char *buf, size_t size)
{
    buf[0] = '\0';
    for (const char *const *c = d->choices; *c != NULL; c++) {
        if (c != d->choices)
            strncat(buf, sep, size - strlen(buf) - 1);
        strncat(buf, *c, size - strlen(buf) - 1);
    }
}

/*
 * Checks `value` against d and stores it in s. On failure the message (err_message) is the
 * reason without any prefix: the caller knows whether the value came from a flag, a variable
 * or a file, and says so.
 */
static int setting_set(settings *s, const setting_def *d, const char *value)
{
    char shown[ECHO_MAX + 4], lo[32], hi[32], list[128];
    unsigned long long v = 0;
    size_t len = strlen(value);

    echo(shown, sizeof(shown), value);
    if (len > VALUE_MAX_LEN)
        return err_set(ERR_CONFIG, "value is longer than %d bytes", VALUE_MAX_LEN);
    switch (d->type) {
    case SET_STRING:
        if (len == 0 && (d->flags & SET_NONEMPTY))
            return err_set(ERR_CONFIG, "must not be empty");
        break;
    case SET_UINT:
        if (parse_digits(value, len, &v) < 0 || v < d->min || v > d->max)
            return err_set(ERR_CONFIG, "\"%s\" is not a number between %llu and %llu", shown,
                           d->min, d->max);
        *(unsigned *)field_of(s, d) = (unsigned)v;
        return 0;
    case SET_SIZE:
        if (parse_size(value, &v) < 0 || v < d->min || v > d->max || v > SIZE_MAX) {
            format_size(lo, sizeof(lo), d->min);
            format_size(hi, sizeof(hi), d->max);
            return err_set(ERR_CONFIG,
                           "\"%s\" is not a size between %s and %s (bytes, or with k, M, G)", shown,
                           lo, hi);
        }
        *(size_t *)field_of(s, d) = (size_t)v;
        return 0;
    case SET_ENUM:
        for (const char *const *c = d->choices; *c != NULL; c++) {
            if (strcasecmp(*c, value) == 0) {
                value = *c;
                goto store;
            }
        }
        choice_list(d, ", ", list, sizeof(list));
        return err_set(ERR_CONFIG, "\"%s\" is not one of %s", shown, list);
    case SET_BOOL:
        if (strcasecmp(value, "true") == 0 || strcasecmp(value, "yes") == 0 ||
            strcasecmp(value, "on") == 0 || strcmp(value, "1") == 0) {
            *(bool *)field_of(s, d) = true;
            return 0;
        }
        if (strcasecmp(value, "false") == 0 || strcasecmp(value, "no") == 0 ||
            strcasecmp(value, "off") == 0 || strcmp(value, "0") == 0) {
            *(bool *)field_of(s, d) = false;
            return 0;
        }
        return err_set(ERR_CONFIG, "\"%s\" is not true or false", shown);
    case SET_HEX:
        if (len == 0 || len % 2 != 0 || len > 256 || strspn(value, "0123456789abcdefABCDEF") != len)
            return err_set(ERR_CONFIG,
                           "\"%s\" is not an even-length hex string of at most 256 digits", shown);
        break;
    }
store:
    if (set_string(s, d, len == 0 ? NULL : value) < 0)
        return err_set(ERR_NOMEM, "out of memory");
    return 0;
}

static int apply_defaults(settings *s, char **envp)
{
    for (size_t i = 0; i < SETTING_COUNT; i++) {
        const setting_def *d = &setting_defs[i];
        if (d->def != NULL && setting_set(s, d, d->def) < 0)
            return err_set(ERR_CONFIG, "default of %s: %s", d->name, err_message());
    }

    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    s->threads = cpus < 1 ? 1u : cpus > 1024 ? 1024u : (unsigned)cpus;

    /* XDG says a relative XDG_CACHE_HOME is to be ignored. */
    const char *xdg = env_get(envp, "XDG_CACHE_HOME");
    const char *home = env_get(envp, "HOME");
    char *dir = NULL;
    int n = -1;
    if (xdg != NULL && xdg[0] == '/')
        n = asprintf(&dir, "%s/almanac", xdg);
    else if (home != NULL && home[0] != '\0')
        n = asprintf(&dir, "%s/.cache/almanac", home);
    else
        n = (dir = strdup("/tmp/almanac-cache")) == NULL ? -1 : 0;
    if (n < 0)
        return err_set(ERR_NOMEM, "out of memory");
    s->cache_dir = dir;
    return 0;
}

/* The settings file whole; messages name it as shown (escaped), not as given. */
static int read_file(const char *path, char **data, size_t *len)
{
    char shown[PATH_ECHO_MAX + 4];
    file_contents file = {0};
    size_t plen = strlen(path);

    if (file_read(&file, path, CONFIG_FILE_MAX, FILE_READ_REGULAR_ONLY) < 0) {
        const char *why = err_message();
        if (strncmp(why, path, plen) == 0 && strncmp(why + plen, ": ", 2) == 0)
            why += plen + 2;
        echo(shown, sizeof(shown), path);
        return err_set(ERR_CONFIG, "%s: %s", shown, why);
    }
    *data = file.data;
    *len = file.len;
    return 0;
}

/* "LINE:COL" of a key in doc, or "?:?" if the parser recorded none. */
static const char *origin_of(const confdoc *doc, const char *key)
{
    const char *o = json_string_value(json_object_get(doc->origins, key));
    return o != NULL ? o : "?:?";
}

/* Appends item to the comma-joined list in *joined; setting_set checks the total length. */
static int join_item(char **joined, const char *item)
{
    size_t old = *joined != NULL ? strlen(*joined) : 0, add = strlen(item);
    char *grown = realloc(*joined, old + add + 2);
    if (grown == NULL)
        return -1;
    if (old > 0)
        grown[old++] = ',';
    memcpy(grown + old, item, add + 1);
    *joined = grown;
    return 0;
}

static int apply_file(settings *s, const char *path)
{
    confdoc_limits limits = {.max_bytes = CONFIG_FILE_MAX,
                             .max_depth = 16,
                             .max_key_len = 256,
                             .max_entries = 1000,
                             .max_documents = 16};
    confdoc_list list = {0};
    confdoc_error perr = {0};
    char *data = NULL, *text = NULL, *joined[SETTING_COUNT] = {0};
    const char *joined_origin[SETTING_COUNT] = {0};
    char shown[PATH_ECHO_MAX + 4], key_shown[ECHO_MAX + 4];
    size_t len = 0;
    int error = ERR_CONFIG;

    echo(shown, sizeof(shown), path);
    if (read_file(path, &data, &len) < 0)
        goto out;
    if (yamlconf_parse(&list, data, len, &limits, &perr) < 0) {
        if (perr.line > 0)
            err_set(ERR_CONFIG, "%s:%u:%u: %s", shown, perr.line, perr.col, perr.message);
        else
            err_set(ERR_CONFIG, "%s: %s", shown, perr.message);
        goto out;
    }
    if (list.count > 1) {
        const char *first = NULL;
        json_t *v;
        json_object_foreach(list.docs[1].props, first, v) break;
        err_set(ERR_CONFIG, "%s:%s: only one YAML document is allowed", shown,
                first != NULL ? origin_of(&list.docs[1], first) : "?:?");
        goto out;
    }

    for (size_t di = 0; di < list.count; di++) {
        const confdoc *doc = &list.docs[di];
        const char *key;
        json_t *value;
        json_object_foreach(doc->props, key, value)
        {
            if (reposet_is_key(key))
                continue; /* read whole below */
            const char *bracket = strchr(key, '[');
            size_t namelen = bracket != NULL ? (size_t)(bracket - key) : strlen(key);
            const setting_def *d = find_def(key, namelen);
            echo(key_shown, sizeof(key_shown), key);
            if (d != NULL && bracket != NULL) {
                /* Only a plain `name[N]` item of a list setting is allowed. */
                const char *close = strchr(bracket, ']');
                unsigned long long idx;
                if (!(d->flags & SET_LIST) || close == NULL || close[1] != '\0' ||
                    parse_digits(bracket + 1, (size_t)(close - bracket - 1), &idx) < 0)
                    d = NULL;
            }
            if (d == NULL) {
                char maybe[64];
                hint(maybe, sizeof(maybe), "", key, strlen(key));
                err_set(ERR_CONFIG, "%s:%s: %s: unknown key%s", shown, origin_of(doc, key),
                        key_shown, maybe);
                goto out;
            }
            if (d->flags & SET_NOT_IN_FILE) {
                err_set(ERR_CONFIG, "%s:%s: %s: cannot be set inside the config file", shown,
                        origin_of(doc, key), key_shown);
                goto out;
            }
            /* Spring's text of the scalar, so `port: 8080` and `port: "8080"` read alike. */
            free(text);
            if ((text = scalar_to_text(value)) == NULL) {
                err_set(ERR_NOMEM, "out of memory");
                goto out;
            }
            if (json_is_string(value) && strlen(text) != json_string_length(value)) {
                err_set(ERR_CONFIG, "%s:%s: %s: value holds a NUL byte", shown, origin_of(doc, key),
                        key_shown);
                goto out;
            }
            if (bracket != NULL) {
                size_t i = (size_t)(d - setting_defs);
                if (joined_origin[i] == NULL)
                    joined_origin[i] = origin_of(doc, key);
                if (join_item(&joined[i], text) < 0) {
                    err_set(ERR_NOMEM, "out of memory");
                    goto out;
                }
                continue;
            }
            if (setting_set(s, d, text) < 0) {
                err_set(ERR_CONFIG, "%s:%s: %s: %s", shown, origin_of(doc, key), key_shown,
                        err_message());
                goto out;
            }
        }
    }
    if (list.count > 0) {
        const char *where = NULL;
        reposet_dispose(&s->repos);
        if (reposet_parse(&s->repos, list.docs[0].props, list.docs[0].origins, &where) < 0) {
            err_set(ERR_CONFIG, "%s:%s: %s", shown, where ? where : "?:?", err_message());
            goto out;
        }
    }
    for (size_t i = 0; i < SETTING_COUNT; i++) {
        if (joined[i] != NULL && setting_set(s, &setting_defs[i], joined[i]) < 0) {
            err_set(ERR_CONFIG, "%s:%s: %s: %s", shown, joined_origin[i], setting_defs[i].name,
                    err_message());
            goto out;
        }
    }
    error = 0;
out:
    for (size_t i = 0; i < SETTING_COUNT; i++)
        free(joined[i]);
    free(text);
    free(data);
    confdoc_list_dispose(&list);
    return error;
}

typedef struct flag_value {
    const setting_def *def;
    const char *value;
} flag_value;

/* scheme://user:password@host…: userinfo (before the first '/', '?' or '#') holds a ':'. */
static bool url_has_password(const char *value)
{
    const char *start = strstr(value, "://");
    if (start == NULL)
        return false;
    start += 3;
    size_t authority = strcspn(start, "/?#");
    const char *at = memchr(start, '@', authority);
    return at != NULL && memchr(start, ':', (size_t)(at - start)) != NULL;
}

/* Reads argv into flags[] without applying anything. 1 when --help was asked for. */
static int scan_argv(flag_value *flags, size_t *count, int argc, char **argv)
{
    char shown[ECHO_MAX + 4];
    *count = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        echo(shown, sizeof(shown), arg);
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0)
            return 1;
        if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0')
            return err_set(ERR_CONFIG, "unexpected argument \"%s\"", shown);
        const char *name = arg + 2, *eq = strchr(name, '=');
        size_t namelen = eq != NULL ? (size_t)(eq - name) : strlen(name);
        const setting_def *d = find_def(name, namelen);
        const char *negated = NULL;
        if (d == NULL && eq == NULL && strncmp(name, "no-", 3) == 0) {
            d = find_def(name + 3, namelen - 3);
            if (d != NULL && d->type == SET_BOOL)
                negated = "false";
            else
                d = NULL;
        }
        if (d == NULL) {
            if (eq != NULL && (size_t)(eq - arg) < sizeof(shown))
                shown[eq - arg] = '\0';
            char maybe[64];
            hint(maybe, sizeof(maybe), "--", name, namelen);
            return err_set(ERR_CONFIG, "unknown flag %s%s", shown, maybe);
        }
        const char *value = eq != NULL ? eq + 1 : negated;
        if (value == NULL && d->type == SET_BOOL)
            value = "true";
        if (value == NULL) {
            /* A following flag is not taken for a value: `--repo --port 1` is a mistake. */
            if (i + 1 >= argc || strncmp(argv[i + 1], "--", 2) == 0)
                return err_set(ERR_CONFIG, "--%s: needs a value", d->name);
            value = argv[++i];
        }
        if ((d->flags & SET_NO_PASSWORD_ARGV) && url_has_password(value) &&
            strcmp(d->name, "repo") == 0) {
            return err_set(
                ERR_CONFIG,
                "--repo: a password in the URI does not belong on the command line (other users "
                "see it in the process list); write it to a file and name that file in "
                "ALMANAC_GIT_PASSWORD_FILE (the user name goes in ALMANAC_GIT_USERNAME)");
        }
        if ((d->flags & SET_NO_PASSWORD_ARGV) && url_has_password(value)) {
            return err_set(
                ERR_CONFIG,
                "--%s: a URL with a password does not belong on the command line (other users "
                "see it in the process list); give it in the environment or the --config file",
                d->name);
        }
        flags[*count].def = d;
        flags[*count].value = value;
        (*count)++;
    }
    return 0;
}

int settings_load(settings *out, int argc, char **argv, char **envp)
{
    settings s = {0};
    flag_value *flags = NULL;
    size_t nflags = 0;
    const char *config = NULL;
    char name[64];
    int error = ERR_CONFIG;

    if (envp == NULL)
        envp = environ;
    if (argc < 0)
        argc = 0;
    if ((flags = calloc((size_t)argc + 1, sizeof(*flags))) == NULL) {
        error = err_set(ERR_NOMEM, "out of memory");
        goto out;
    }
    if ((error = scan_argv(flags, &nflags, argc, argv)) != 0) {
        if (error > 0)
            settings_usage(stdout);
        goto out;
    }
    error = ERR_CONFIG;
    if (apply_defaults(&s, envp) < 0)
        goto out;

    /* The file is chosen first (flag over environment), then read below both. */
    const setting_def *config_def = find_def("config", 6);
    if (config_def != NULL) {
        env_name(config_def, name, sizeof(name));
        config = env_get(envp, name);
    }
    for (size_t i = 0; i < nflags; i++) {
        if (flags[i].def == config_def)
            config = flags[i].value;
    }
    if (config != NULL && config[0] != '\0' && apply_file(&s, config) < 0)
        goto out;

    /* An empty variable counts as unset, as most 12-factor tools treat `ALMANAC_X=`. */
    for (size_t i = 0; i < SETTING_COUNT; i++) {
        env_name(&setting_defs[i], name, sizeof(name));
        const char *value = env_get(envp, name);
        if (value != NULL && value[0] != '\0' && setting_set(&s, &setting_defs[i], value) < 0) {
            err_set(ERR_CONFIG, "%s: %s", name, err_message());
            goto out;
        }
    }
    for (size_t i = 0; i < nflags; i++) {
        if (setting_set(&s, flags[i].def, flags[i].value) < 0) {
            err_set(ERR_CONFIG, "--%s: %s", flags[i].def->name, err_message());
            goto out;
        }
    }

    if (s.repo == NULL) {
        err_set(ERR_CONFIG, "no repository: give --repo URI or ALMANAC_REPO");
        goto out;
    }
    if ((s.tls_cert == NULL) != (s.tls_key == NULL)) {
        err_set(ERR_CONFIG, "--tls-cert and --tls-key go together: give both or neither");
        goto out;
    }
    /* Receivers match originService as a pattern: one of these would make it match others. */
    if (s.bus_id != NULL && strpbrk(s.bus_id, "*?{}") != NULL) {
        err_set(ERR_CONFIG, "--bus-id: no '*', '?', '{' or '}' (it is matched as a pattern)");
        goto out;
    }
    if (s.verify_commits != (s.allowed_signers != NULL)) {
        err_set(ERR_CONFIG, "%s",
                s.verify_commits ? "--verify-commits needs --allowed-signers FILE: the keys "
                                   "commits must be signed with"
                                 : "--allowed-signers has no effect without --verify-commits");
        goto out;
    }
    if (s.peers != NULL && s.peer_secret == NULL) {
        err_set(ERR_CONFIG, "--peers needs --peer-secret: peer notices are signed");
        goto out;
    }
    error = 0;
out:
    free(flags);
    if (error == 0) {
        *out = s;
    } else {
        settings_dispose(&s);
        memset(out, 0, sizeof(*out));
    }
    return error;
}

void settings_dispose(settings *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < SETTING_COUNT; i++) {
        if (holds_string(&setting_defs[i]))
            free(*(char **)field_of(s, &setting_defs[i]));
    }
    reposet_dispose(&s->repos);
    memset(s, 0, sizeof(*s));
}

static void usage_default(const setting_def *d, char *buf, size_t size)
{
    char lo[32], hi[32];
    const char *def = d->def;
    if (strcmp(d->name, "threads") == 0)
        def = "the number of online CPUs";
    else if (strcmp(d->name, "cache-dir") == 0)
        def = "$XDG_CACHE_HOME/almanac, else $HOME/.cache/almanac, else /tmp/almanac-cache";
    if (d->type == SET_UINT || d->type == SET_SIZE) {
        if (d->type == SET_SIZE) {
            format_size(lo, sizeof(lo), d->min);
            format_size(hi, sizeof(hi), d->max);
        } else {
            snprintf(lo, sizeof(lo), "%llu", d->min);
            snprintf(hi, sizeof(hi), "%llu", d->max);
        }
        snprintf(buf, size, "default %s, %s..%s", def, lo, hi);
    } else if (def != NULL) {
        snprintf(buf, size, "default %s", def);
    } else {
        buf[0] = '\0';
    }
}

/* Prints text in the help column, wrapped at USAGE_WIDTH; the first line follows `left`. */
#define USAGE_INDENT 33
#define USAGE_WIDTH 100
static void usage_wrapped(FILE *to, const char *left, const char *text)
{
    int column = fprintf(to, "  %-*s", USAGE_INDENT - 3, left);
    if (column > USAGE_INDENT - 1) {
        fputc('\n', to);
        column = 0;
    }
    while (*text != '\0') {
        size_t word = strcspn(text, " ");
        if (column > USAGE_INDENT && column + 1 + (int)word > USAGE_WIDTH) {
            fputc('\n', to);
            column = 0;
        }
        if (column < USAGE_INDENT) {
            column += fprintf(to, "%*s", USAGE_INDENT - column, "");
        } else {
            fputc(' ', to);
            column++;
        }
        column += fprintf(to, "%.*s", (int)word, text);
        text += word;
        text += strspn(text, " ");
    }
    fputc('\n', to);
}

void settings_usage(FILE *to)
{
    char left[200], name[64], extra[128], choices[128], help[256];
    fprintf(to,
            "Usage: %s --repo URI [OPTION]...\n"
            "Serve configuration from a Git repository over the Spring Cloud Config API.\n\n"
            "Each option may also be given as an ALMANAC_* environment variable or as a key "
            "of\nthe --config YAML file; flags override the environment, which overrides the "
            "file.\nOptions take `--name VALUE` or `--name=VALUE`.\n\n",
            PROGRAM_NAME);
    for (size_t i = 0; i < SETTING_COUNT; i++) {
        const setting_def *d = &setting_defs[i];
        const char *metavar = d->metavar;
        if (d->type == SET_ENUM) {
            choice_list(d, "|", choices, sizeof(choices));
            metavar = choices;
        }
        if (d->type == SET_BOOL)
            snprintf(left, sizeof(left), "--[no-]%s", d->name);
        else
            snprintf(left, sizeof(left), "--%s %s", d->name, metavar);
        env_name(d, name, sizeof(name));
        usage_default(d, extra, sizeof(extra));
        usage_wrapped(to, left, d->help);
        snprintf(help, sizeof(help), "[%s%s%s]", name, extra[0] != '\0' ? "; " : "", extra);
        usage_wrapped(to, "", help);
    }
    usage_wrapped(to, "--help", "Print this help and exit.");
}
