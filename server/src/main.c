/*
 * almanac-server — process start, wiring and shutdown.
 *
 * Reads settings, opens the configuration source, starts the HTTP daemon, then the main thread
 * only waits for signals and the poll timer: SIGTERM/SIGINT stop the server gracefully (stop
 * accepting, let in-flight requests finish, exit), and every --refresh-interval seconds the
 * remote is fetched. Offline subcommands (`encrypt`, `decrypt`) run without a server.
 */
#include "change/announce.h"
#include "guard/auth.h"
#include "guard/cipher.h"
#include "guard/jwks.h"
#include "compose/environment.h"
#include "errors.h"
#include "fileread.h"
#include "change/events.h"
#include "change/bus.h"
#include "change/peers.h"
#include "http/http.h"
#include "log.h"
#include "metrics.h"
#include "change/refresh.h"
#include "compose/render.h"
#include "source/repo.h"
#include "source/repos.h"
#include "api/routes.h"
#include "server.h"
#include "settings.h"
#include "springconf.h"
#include "compose/snapshot.h"
#include "http/tls.h"
#include "change/watch.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define MODULE "main"
#define RESPONSE_CACHE_ENTRIES 65536
#define SECRET_FILE_MAX (64u << 10) /* a secret is a few dozen bytes */
/* Between two requested fetches: ten webhooks in a second cost at most two fetches. */
#define REFRESH_MIN_GAP_MS 1000

static log_level parse_level(const char *name)
{
    if (name == NULL)
        return LOG_LEVEL_INFO;
    if (strcasecmp(name, "debug") == 0)
        return LOG_LEVEL_DEBUG;
    if (strcasecmp(name, "warn") == 0)
        return LOG_LEVEL_WARN;
    if (strcasecmp(name, "error") == 0)
        return LOG_LEVEL_ERROR;
    return LOG_LEVEL_INFO;
}

static void wipe_free(char *secret)
{
    if (secret != NULL) {
        OPENSSL_cleanse(secret, strlen(secret));
        free(secret);
    }
}

/* A secret kept in a file: one line (editors and `echo` leave a newline that is not part of it),
 * never empty (an empty key would sign for anyone). NULL with the error logged. */
static char *read_secret_file(const char *path, const char *flag)
{
    file_contents file = {0};
    if (file_read(&file, path, SECRET_FILE_MAX, FILE_READ_SECRET) < 0) {
        LOG_ERROR(MODULE, "%s: %s", flag, err_message());
        return NULL;
    }
    char *secret = file.data; /* callers wipe it (wipe_free) */
    secret[strcspn(secret, "\r\n")] = '\0';
    if (secret[0] == '\0') {
        LOG_ERROR(MODULE, "%s: %s is empty", flag, path);
        wipe_free(secret);
        return NULL;
    }
    return secret;
}

/* The id this replica's notices and bus events carry as their origin: --bus-id, or Spring's
 * shape name:port:random, which contains no pattern character. */
static void make_instance_id(server *srv, const settings *cfg)
{
    unsigned char random[8] = {0};
    char hex[17];
    if (cfg->bus_id != NULL && cfg->bus_id[0] != '\0') {
        snprintf(srv->instance_id, sizeof(srv->instance_id), "%s", cfg->bus_id);
        return;
    }
    if (RAND_bytes(random, sizeof(random)) != 1)
        LOG_WARN(MODULE, "no random bytes for the instance id");
    for (size_t i = 0; i < sizeof(random); i++)
        snprintf(hex + 2 * i, 3, "%02x", random[i]);
    snprintf(srv->instance_id, sizeof(srv->instance_id), "almanac:%u:%s",
             cfg->port ? cfg->port : 8888, hex);
}

/* A refresh event from another bus participant: fetch now. */
static void bus_refresh_requested(void *ctx)
{
    server *srv = ctx;
    if (srv->refresher != NULL)
        refresh_request_all_heard(srv->repos);
}

/* Whether the repository named serves what a watcher watches (its change may wake it). */
static bool serves_watched(void *ctx, const char *repository, const char *applications,
                           const char *profiles)
{
    server *srv = ctx;
    return strcmp(repo_set_match(srv->repos, applications, profiles)->name, repository) == 0;
}

/* The default repository's refresher and those of the others: stopped first (no fetch runs
 * on during shutdown), freed only once the HTTP server is gone (a webhook still being handled
 * may call them until then). */
static void stop_refreshers(server *srv)
{
    for (size_t i = 1; srv->repos != NULL && i < repo_set_count(srv->repos); i++)
        refresher_stop(repo_set_at(srv->repos, i)->owner_data);
    refresher_stop(srv->refresher);
}

static void free_refreshers(server *srv)
{
    for (size_t i = 1; srv->repos != NULL && i < repo_set_count(srv->repos); i++) {
        repo_source *src = repo_set_at(srv->repos, i);
        refresher_free(src->owner_data);
        src->owner_data = NULL;
    }
    if (srv->repos != NULL)
        repo_set_at(srv->repos, 0)->owner_data = NULL;
    refresher_free(srv->refresher);
    srv->refresher = NULL;
}

/* SIGHUP: the new auth file replaces the old one whole, or not at all. */
static void reload_auth(server *srv, const char *path)
{
    authdb *fresh = NULL;
    if (authdb_load(&fresh, path) < 0) {
        LOG_ERROR(MODULE, "--auth-file not reloaded, the previous one stays in force: %s",
                  err_message());
        return;
    }
    authdb_limit_failures(fresh, srv->settings->auth_failures_per_minute);
    /* Keys fetched from an issuer carry over, in case it cannot be reached right now. */
    authdb *old = authdb_acquire(&srv->auth);
    authdb_adopt_keys(fresh, old);
    authdb_release(old);
    if (authdb_start(fresh) < 0) {
        LOG_ERROR(MODULE, "--auth-file not reloaded, the previous one stays in force: %s",
                  err_message());
        authdb_release(fresh);
        return;
    }
    LOG_INFO(MODULE, "--auth-file reloaded: %zu users and tokens", authdb_count(fresh));
    authdb_swap(&srv->auth, fresh);
}

/*
 * Signals. SIGTERM, SIGINT and SIGHUP are blocked before anything else happens, so that none
 * can kill the process while it clones (which leaves a half-written clone behind) and every
 * thread inherits the mask. One thread takes them with sigwait and passes each through a pipe
 * to the main loop; a SIGHUP during start-up therefore waits in the pipe until the server
 * runs. SIGTERM also cancels a clone or fetch at once (repo_cancel_fetches), so a stop during
 * start-up ends the process promptly with the temporary clone removed.
 */
static sigset_t stop_signals;
static int signal_pipe[2] = {-1, -1};
static atomic_bool stop_requested;

static void block_signals(void)
{
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    signal(SIGPIPE, SIG_IGN);
}

static void *signal_thread(void *arg)
{
    (void)arg;
    for (;;) {
        int sig = 0;
        if (sigwait(&stop_signals, &sig) != 0)
            continue;
        if (sig == SIGTERM || sig == SIGINT) {
            atomic_store(&stop_requested, true);
            repo_cancel_fetches();
        }
        unsigned char byte = (unsigned char)sig;
        while (write(signal_pipe[1], &byte, 1) < 0 && errno == EINTR)
            ;
    }
    return NULL;
}

static int start_signal_thread(void)
{
    pthread_t thread;
    if (pipe2(signal_pipe, O_CLOEXEC) < 0)
        return err_set(ERR_INTERNAL, "cannot create a pipe: %s", strerror(errno));
    if (pthread_create(&thread, NULL, signal_thread, NULL) != 0)
        return err_set(ERR_INTERNAL, "cannot start the signal thread");
    pthread_detach(thread);
    return 0;
}

/* The next signal the signal thread passed on. */
static int next_signal(void)
{
    unsigned char byte = 0;
    ssize_t n;
    while ((n = read(signal_pipe[0], &byte, 1)) < 0 && errno == EINTR)
        ;
    return n == 1 ? byte : SIGTERM;
}

static int run(const settings *cfg)
{
    int status = 1;
    server srv;
    http_server *http = NULL;
    memset(&srv, 0, sizeof(srv));
    srv.settings = cfg;

    /* libcurl's global state (issuers' jwks-url), before any thread starts. */
    if (jwks_global_init() < 0) {
        LOG_ERROR(MODULE, "%s", err_message());
        goto out;
    }
    repo_options ropts = {
        .uri = cfg->repo,
        .cache_dir = cfg->cache_dir,
        .default_label = cfg->default_label,
        .max_file_bytes = cfg->max_file_bytes,
        .git_timeout = cfg->git_timeout,
        .allow_insecure_http = cfg->git_allow_insecure_http,
        .transport = {.ca_file = cfg->git_ca_file,
                      .proxy = cfg->git_proxy,
                      .known_hosts = cfg->git_known_hosts,
                      .ssh_key = cfg->git_ssh_key_file},
        .allowed_signers_file = cfg->verify_commits ? cfg->allowed_signers : NULL,
        /* this program again, as a `git-fetch` worker: a fetch that hangs can be killed */
        .fetch_program = "/proc/self/exe",
    };
    repo_set_options sopts = {
        .base = &ropts,
        .search_paths = cfg->search_paths,
        .refresh_interval = cfg->refresh_interval,
        .specs = &cfg->repos,
        .max_mirrors = cfg->max_mirrors,
        .miss_seconds = cfg->mirror_miss_seconds,
    };
    int opened = repo_set_open(&srv.repos, &sopts);
    if (atomic_load(&stop_requested)) {
        LOG_INFO(MODULE, "stopped during start-up");
        status = 0;
        goto out;
    }
    if (opened < 0) {
        LOG_ERROR(MODULE, "cannot open repository: %s", err_message());
        goto out;
    }
    confdoc_limits limits = CONFDOC_LIMITS_DEFAULT;
    limits.max_bytes = cfg->max_file_bytes;
    if (snapcache_new(&srv.snapshots, cfg->snapshot_cache, &limits) < 0 ||
        respcache_new(&srv.responses, cfg->response_cache_bytes, RESPONSE_CACHE_ENTRIES) < 0) {
        LOG_ERROR(MODULE, "%s", err_message());
        goto out;
    }
    if (keyring_from_settings(&srv.keyring, cfg) < 0) {
        LOG_ERROR(MODULE, "encryption keys: %s", err_message());
        goto out;
    }
    if (cfg->overrides_file && overrides_load(&srv.overrides, cfg->overrides_file) < 0) {
        LOG_ERROR(MODULE, "--overrides-file: %s", err_message());
        goto out;
    }
    srv.repo = repo_set_at(srv.repos, 0)->repo;
    srv.search_paths = repo_set_at(srv.repos, 0)->search_paths;
    /* Spring Boot judges on-cloud-platform documents against the process it runs in. */
    srv.cloud_platform = cfg->cloud_platform == NULL || strcmp(cfg->cloud_platform, "auto") == 0
                             ? springconf_detect_platform(environ)
                             : springconf_platform(cfg->cloud_platform);
    LOG_INFO(MODULE, "cloud platform for spring.config.activate.on-cloud-platform: %s%s",
             srv.cloud_platform,
             cfg->cloud_platform == NULL || strcmp(cfg->cloud_platform, "auto") == 0
                 ? " (detected)"
                 : "");
    watch_limits wlimits = {
        .max_timeout = cfg->watch_timeout_max,
        .max_watchers = cfg->max_connections,
        .max_per_client = cfg->max_watchers_per_ip,
    };
    watch_deps wdeps = {.render = render_latest, .serves = serves_watched, .ctx = &srv};
    if (watch_registry_new(&srv.watches, &wdeps, &wlimits) < 0 ||
        event_hub_new(&srv.events, 15, cfg->max_connections) < 0) {
        LOG_ERROR(MODULE, "%s", err_message());
        goto out;
    }
    /* Who hears of a change, in this order: answers cached under a name that now means other
     * bytes go first, so that the watchers and the event stream that follow see fresh ones. */
    if (change_announcer_new(&srv.changes) < 0 ||
        change_subscribe(srv.changes, respcache_on_change, srv.responses) < 0 ||
        change_subscribe(srv.changes, watch_on_change, srv.watches) < 0 ||
        change_subscribe(srv.changes, event_hub_on_change, srv.events) < 0) {
        LOG_ERROR(MODULE, "%s", err_message());
        goto out;
    }
    if (cfg->webhook_secret != NULL &&
        (srv.webhook_secret = read_secret_file(cfg->webhook_secret, "--webhook-secret")) == NULL)
        goto out;
    make_instance_id(&srv, cfg);
    if (cfg->peer_secret != NULL) {
        char *secret = read_secret_file(cfg->peer_secret, "--peer-secret");
        peers_options popts = {
            .targets = cfg->peers,
            .default_port = cfg->port ? cfg->port : 8888,
            .https = cfg->tls_cert != NULL,
            .secret = secret,
            .self_id = srv.instance_id,
        };
        int error = secret ? peers_new(&srv.peers, &popts) : -1;
        wipe_free(secret);
        if (error < 0) {
            if (secret != NULL)
                LOG_ERROR(MODULE, "%s", err_message());
            goto out;
        }
        /* Peers are told after the local listeners: this replica's watchers first. */
        if (change_subscribe(srv.changes, peers_on_change, srv.peers) < 0) {
            LOG_ERROR(MODULE, "%s", err_message());
            goto out;
        }
        if (cfg->peers != NULL)
            LOG_INFO(MODULE, "peers: %s are told of new commits", cfg->peers);
    }
    if (cfg->auth_file != NULL) {
        if (authdb_load(&srv.auth, cfg->auth_file) < 0) {
            LOG_ERROR(MODULE, "--auth-file: %s", err_message());
            goto out;
        }
        authdb_limit_failures(srv.auth, cfg->auth_failures_per_minute);
        if (authdb_start(srv.auth) < 0) {
            LOG_ERROR(MODULE, "--auth-file: %s", err_message());
            goto out;
        }
        LOG_INFO(MODULE, "access control on: %zu users and tokens", authdb_count(srv.auth));
    }
    if ((cfg->tls_cert != NULL) != (cfg->tls_key != NULL)) {
        LOG_ERROR(MODULE, "--tls-cert and --tls-key go together");
        goto out;
    }
    if (cfg->tls_cert != NULL && tls_load(cfg->tls_cert, cfg->tls_key) < 0) {
        LOG_ERROR(MODULE, "%s", err_message());
        goto out;
    }

    http_options hopts = {
        .listen = cfg->listen,
        .port = cfg->port,
        .threads = cfg->threads ? cfg->threads : 1,
        .max_connections = cfg->max_connections,
        .max_body_bytes = cfg->max_body_bytes,
        .connection_timeout = cfg->idle_timeout,
        .per_ip_connections = cfg->max_connections_per_ip,
        .connection_memory = cfg->max_header_bytes,
        .tls = cfg->tls_cert != NULL,
    };
    /* Before the first request: POST /monitor hands work to the refresher. */
    refresh_deps rdeps = {.repo = srv.repo,
                          .snapshots = srv.snapshots,
                          .changes = srv.changes,
                          .set = srv.repos,
                          .source = repo_set_at(srv.repos, 0)};
    if (refresher_start(&srv.refresher, &rdeps, cfg->refresh_interval, REFRESH_MIN_GAP_MS) < 0) {
        LOG_ERROR(MODULE, "%s", err_message());
        goto out;
    }
    repo_set_at(srv.repos, 0)->owner_data = srv.refresher;
    /* Each other repository polls on its own schedule and fetches on its own webhooks. */
    for (size_t i = 1; i < repo_set_count(srv.repos); i++) {
        repo_source *src = repo_set_at(srv.repos, i);
        refresher *r = NULL;
        rdeps.source = src;
        rdeps.repo = src->repo;
        if (refresher_start(&r, &rdeps, src->refresh_interval, REFRESH_MIN_GAP_MS) < 0) {
            LOG_ERROR(MODULE, "%s", err_message());
            goto out;
        }
        src->owner_data = r;
    }
    /* After the refresher (its events ask it to fetch), before the first request. */
    if (cfg->bus_amqp_url != NULL) {
        bus_options bopts = {
            .url = cfg->bus_amqp_url,
            .destination = cfg->bus_destination,
            .id = srv.instance_id,
            .ca_file = cfg->bus_ca_file,
            .on_refresh = bus_refresh_requested,
            .ctx = &srv,
        };
        if (bus_new(&srv.bus, &bopts) < 0 ||
            change_subscribe(srv.changes, bus_on_change, srv.bus) < 0) {
            LOG_ERROR(MODULE, "%s", err_message());
            goto out;
        }
        LOG_INFO(MODULE, "Spring Cloud Bus on exchange %s as %s", cfg->bus_destination,
                 srv.instance_id);
    }
    if (http_start(&http, &srv, &hopts, routes_dispatch) < 0) {
        LOG_ERROR(MODULE, "%s", err_message());
        goto out;
    }
    LOG_INFO(MODULE, "listening on %s:%u (%s, repository %s)", cfg->listen, http_port(http),
             cfg->tls_cert ? "https" : "http", repo_display_uri(srv.repo));
    if (repo_set_count(srv.repos) > 1)
        LOG_INFO(MODULE, "%zu more repositories in repos: of %s", repo_set_count(srv.repos) - 1,
                 cfg->config_file);

    for (;;) {
        int sig = next_signal();
        if (sig == SIGTERM || sig == SIGINT) {
            LOG_INFO(MODULE, "%s received, shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
            break;
        }
        LOG_INFO(MODULE, "SIGHUP received: refreshing");
        refresh_request_all(srv.repos);
        if (cfg->auth_file != NULL)
            reload_auth(&srv, cfg->auth_file);
        if (cfg->tls_cert != NULL) {
            /* New handshakes get the new certificate; open connections keep theirs. */
            if (tls_load(cfg->tls_cert, cfg->tls_key) < 0)
                LOG_ERROR(MODULE, "TLS certificate not reloaded, the previous one stays: %s",
                          err_message());
            else
                LOG_INFO(MODULE, "TLS certificate reloaded from %s", cfg->tls_cert);
        }
    }
    srv.stopping = true;
    bus_stop(srv.bus); /* its events call the refresher */
    stop_refreshers(&srv);
    /* Stop accepting, answer every parked watcher, let in-flight requests finish. */
    http_quiesce(http);
    watch_registry_shutdown(srv.watches);
    event_hub_shutdown(srv.events);
    for (int waited = 0; waited < 100 && http_requests_in_flight(http) > 0; waited++) {
        struct timespec pause = {.tv_sec = 0, .tv_nsec = 100 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    status = 0;
out:
    http_stop(http);
    bus_stop(srv.bus);
    free_refreshers(&srv); /* stopped after a clean stop; running if http_start failed */
    watch_registry_free(srv.watches);
    event_hub_free(srv.events);
    bus_free(srv.bus);
    peers_free(srv.peers);
    change_announcer_free(srv.changes);
    overrides_free(srv.overrides);
    keyring_free(srv.keyring);
    authdb_swap(&srv.auth, NULL);
    respcache_free(srv.responses);
    snapcache_free(srv.snapshots);
    repo_set_free(srv.repos);
    wipe_free(srv.webhook_secret);
    tls_shutdown();
    return status;
}

/* Descriptors beyond the connections: the listening socket, pack and index files of the
 * mirror, the fetch child's pipes, log and key files. */
#define DESCRIPTOR_RESERVE 64

/* Every parked watcher holds a socket: take all the descriptors the hard limit allows, and say
 * so when even that is short of what --max-connections can hold (libmicrohttpd's connections
 * plus as many parked watchers, which have left it). */
static void raise_descriptor_limit(unsigned max_connections)
{
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) < 0)
        return;
    rlim_t before = limit.rlim_cur;
    if (limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &limit) < 0)
            limit.rlim_cur = before;
    }
    LOG_INFO(MODULE, "open files: %llu (soft limit raised from %llu, hard limit %llu); each "
             "connection and parked watcher holds one", (unsigned long long)limit.rlim_cur,
             (unsigned long long)before, (unsigned long long)limit.rlim_max);
    unsigned long long wanted = 2ULL * max_connections + DESCRIPTOR_RESERVE;
    if (limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur < wanted)
        LOG_WARN(MODULE, "open files: %llu is below the %llu that --max-connections %u may need "
                 "(its connections and as many parked watchers): raise the hard limit "
                 "(LimitNOFILE=, ulimit -Hn) or lower --max-connections",
                 (unsigned long long)limit.rlim_cur, wanted, max_connections);
}

int main(int argc, char **argv)
{
    /* The offline subcommands keep the default signal actions (Ctrl-C stops them). */
    if (argc > 1 && (strcmp(argv[1], "encrypt") == 0 || strcmp(argv[1], "decrypt") == 0))
        return cipher_cli_main(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "git-fetch") == 0)
        return repo_fetch_child_main(argc - 1, argv + 1);
    block_signals();

    settings cfg;
    int rc = settings_load(&cfg, argc, argv, NULL);
    if (rc == 1)
        return 0;
    if (rc < 0) {
        fprintf(stderr, "almanac-server: %s\n(see almanac-server --help)\n", err_message());
        return 2;
    }
    log_configure(parse_level(cfg.log_level),
                  cfg.log_format && strcmp(cfg.log_format, "json") == 0 ? LOG_FORMAT_JSON
                                                                         : LOG_FORMAT_TEXT);
    raise_descriptor_limit(cfg.max_connections);
    metrics_init();
    routes_init();
    if (start_signal_thread() < 0) {
        LOG_ERROR(MODULE, "%s", err_message());
        settings_dispose(&cfg);
        return 1;
    }
    int status = run(&cfg);
    settings_dispose(&cfg);
    return status;
}
