/*
 * repo — the configuration source: a bare Git mirror under the cache directory, read straight
 * from objects with libgit2, or a plain directory (dir:PATH, Spring's "native" mode).
 *
 * Owns: the only <git2.h> include, the mirror's life (clone, fetch, prune), label resolution,
 * tree walks and file reads, and the Git credentials callback. Does not own: parsing files
 * (snapshot.c), deciding when to fetch (the refresh loop and webhooks), or what a label means to
 * Spring beyond "branch, tag or commit" ("(_)" is replaced by the caller).
 *
 * URIs. https://, http://, ssh://, file:// and scp-like user@host:path go to libgit2 as given
 * but for userinfo: an http(s) URI loses it whole, an ssh one keeps its user name (git@...) and
 * loses any password (a password in a URI ends up in logs and process listings; it is not
 * supported). A plain path names a local repository and is made absolute. url.<base>.insteadOf
 * is not applied (see fetch_into). The mirror lives in
 * <cache_dir>/<name>-<first 12 hex of SHA-256 of that URL>.git, is cloned into a temporary
 * directory and renamed into place, and is repacked once fetches have left many packs.
 * Only branches and tags are mirrored (refs/heads/ and refs/tags/; not the refs/pull/ and
 * the like of hosted forges, which can be huge and are never labels); deleted ones are pruned,
 * and tags of a tree or blob are dropped (see drop_non_commit_tags).
 *
 * Bounded fetches. libgit2 1.5 has no network timeout: a remote that accepts a connection and
 * then says nothing holds a fetch in recv() for as long as the socket lives. So every fetch
 * (the first clone too) runs in another process, a fetch worker: this same program started
 * again as `git-fetch --serve` (repo_fetch_child_main), which takes fetch orders one after
 * another, and which the server kills once --git-timeout has passed, whatever it was doing:
 * connecting, waiting for the first byte or in the middle of a pack. Workers are started ahead
 * of need and reused, so a fetch costs no process start (see "the worker process" below).
 * libgit2 writes objects before it moves refs, and each ref through a lock file renamed into
 * place, so a killed fetch leaves whole refs pointing at whole commits; what it can leave is
 * lock files and temporary pack files, which are removed before the next fetch (and when a
 * mirror is opened, for a process that was killed itself). See docs/architecture.md for why a
 * process rather than a custom libgit2 stream, and why a long-lived one.
 *
 * Display URI (the prefix of property-source names): the URI as given without userinfo and
 * without a trailing slash; a plain path shows as file://<absolute path>; dir:PATH shows as
 * file:<real path>, so names read file:/srv/config/application.yml as Spring's native mode.
 *
 * Credentials (all optional, read on each fetch, never logged):
 *   https/http: ALMANAC_GIT_PASSWORD_FILE (a file holding the password or token; a trailing
 *               newline is ignored) with ALMANAC_GIT_USERNAME (default "git", which token
 *               schemes such as GitHub's accept).
 *   ssh:        --git-ssh-key-file (ALMANAC_GIT_SSH_KEY_FILE; a private key without passphrase,
 *               the public key is derived from it), otherwise ssh-agent. The user comes from the URI (git@...),
 *               else ALMANAC_GIT_USERNAME, else "git".
 * Each kind of credential is offered once per fetch, so a wrong one fails instead of looping.
 *
 * Trust (repo_transport, the same in the fetch worker): https:// certificates are libgit2's
 * to check, against the system's CAs plus --git-ca-file (apply_ca_file); ssh:// host keys are
 * ours, against --git-known-hosts (certificate_cb, known_hosts.c); the proxy is ours to choose
 * (proxy_for). docs/security.md, "Trust on the Git channel", says what each refusal reads.
 *
 * Threads. A git_repository is never shared: each thread that reads gets its own handle from a
 * pthread key (opened lazily, freed at thread exit or at repo_free); the fetcher has its own.
 * A fetch that moved refs bumps a generation counter, and a reader whose handle is older
 * reopens it, so it sees new refs and packs without any lock on the read path. libgit2 also
 * re-reads refs from disk and refreshes its object database on a miss. Fetches serialise on
 * fetch_lock; status fields live under status_lock. repo_free must not race other calls (nor
 * the exit of a thread that used this repo).
 *
 * Dir mode lives in repo_dir.c: it never follows symlinks and skips dotfiles and dot-dirs:
 * walks use lstat semantics, reads go segment by segment with openat(O_NOFOLLOW), so nothing
 * outside the root can be reached.
 */
#include "source/repo.h"

#include "errors.h"
#include "log.h"
#include "metrics.h"
#include "source/known_hosts.h"
#include "source/mirror_check.h"
#include "source/repo_dir.h"
#include "fileread.h"
#include "sshsig.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <git2.h>
#include <jansson.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#if defined(__SANITIZE_ADDRESS__)
#define ALMANAC_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ALMANAC_LSAN 1
#endif
#endif
#ifdef ALMANAC_LSAN
#include <sanitizer/lsan_interface.h>
#endif

#define MODULE "repo"
#define LABEL_MAX 255    /* longer labels are never branch, tag or commit names */
#define REFS_MAX 1000000 /* refs considered when comparing before/after a fetch */
#define DEFAULT_MAX_FILE (16u * 1024u * 1024u)
#define REMOTE_NAME "origin"
#define REPACK_THRESHOLD 20 /* packs in the mirror before they are merged into one */
#define REPACK_RETRY_SECONDS 3600.0 /* after a failed repack, the next try waits this long */
#define DEFAULT_GIT_TIMEOUT 60u
#define CHILD_REPORT_MAX 1024 /* a fetch worker's one-line answer */
#define CA_FILE_MAX (16u * 1024u * 1024u) /* a CA bundle; the system's is about 200 KiB */
#define KNOWN_HOSTS_MAX (4u * 1024u * 1024u) /* a known_hosts file; OpenSSH's are kilobytes */

/* What a fetch may do beyond the URL, and whom it trusts: the same in the server and in its
 * fetch worker (see repo_transport; the strings are owned by the repo, or by the order in the
 * worker). */
typedef struct fetch_policy {
    bool allow_insecure_http; /* a password may cross plain http:// */
    char *ca_file;            /* NULL: the system's CAs only */
    char *proxy;              /* NULL: from the environment */
    char *known_hosts;        /* NULL: $HOME/.ssh/known_hosts */
    char *ssh_key;            /* NULL: ALMANAC_GIT_SSH_KEY_FILE, else ssh-agent */
} fetch_policy;

/* One thread's own handle on the mirror. */
typedef struct repo_slot {
    repo *owner;
    git_repository *git;
    unsigned long generation; /* of the mirror when git was opened */
    struct repo_slot *prev, *next;
} repo_slot;

struct repo {
    bool is_git;
    char *display_uri;
    char *url;         /* what libgit2 fetches from (git mode) */
    char *mirror_path; /* git mode */
    char *root;        /* dir mode: real path of the directory */
    char *default_label;
    size_t max_file_bytes;
    bool in_place; /* a repository read where it is: labels are any revision expression */

    pthread_mutex_t fetch_lock; /* serialises fetches; readers never take it */
    git_repository *fetch_git;  /* used only under fetch_lock */
    unsigned git_timeout;       /* seconds */
    fetch_policy policy;
    char *fetch_program;        /* NULL: fetch in this process */

    pthread_key_t slot_key;
    bool slot_key_ok;
    /* Readers hold it for reading across each call; the fetcher takes it for writing to close
     * every thread's handle (see hold_readers). */
    pthread_rwlock_t handles_lock;
    pthread_mutex_t slots_lock; /* the list of slots, touched when a thread opens or exits */
    repo_slot *slots;
    atomic_ulong generation;

    pthread_mutex_t status_lock;
    repo_status status;
    bool libgit2_up;

    /*
     * label -> commit id, valid for one generation of the mirror: only our own fetch moves its
     * refs, and it bumps the generation when it does, so a cached read costs no ref lookup on
     * disk (which was most of its system calls).
     */
    pthread_rwlock_t labels_lock;
    json_t *labels;                  /* label ("" for the default) -> "commit hex" */
    unsigned long labels_generation;

    /* A damaged mirror (see mirror_check.h) is cloned again; these are under fetch_lock. */
    /* damaged and the last re-clone failed: the next fetch re-clones (read without the lock by
     * suspect_damage, which then starts nothing) */
    atomic_bool needs_repair;
    char damage[200];    /* what the check found */
    /* The background check a read error starts (suspect_damage); one at a time. */
    pthread_mutex_t repair_lock;
    pthread_t repair_thread;
    bool repair_thread_started; /* joined before the next one starts and at repo_free */
    atomic_bool repair_running;
    double last_sound_check;    /* monotonic; a clean check is not repeated for a while */
    double repack_failed_at;    /* monotonic, under fetch_lock; 0: the last repack was fine */
    /* Signed configuration only: NULL when commits are not verified. */
    allowed_signers *signers;
    pthread_mutex_t verdicts_lock;
    json_t *verdicts; /* "commit hex" -> {"ok": bool, "text": signer or reason} */
    json_t *refused;  /* branch -> {"branch","commit","reason","serving"}; under status_lock */
};

#define SUSPECT_CHECK_INTERVAL 60.0 /* seconds after a clean check before a read error re-checks */

#define LABEL_CACHE_MAX 4096

/* libgit2 1.5 may have no error to report (git_error_last() == NULL). */
static const char *git_reason(void)
{
    const git_error *e = git_error_last();
    return e && e->message && e->message[0] ? e->message : "unknown libgit2 error";
}

static char *dup_str(const char *s)
{
    return s ? strdup(s) : NULL;
}

static char *concat3(const char *a, const char *b, const char *c)
{
    size_t la = strlen(a), lb = strlen(b), lc = strlen(c);
    char *p = malloc(la + lb + lc + 1);
    if (p) {
        memcpy(p, a, la);
        memcpy(p + la, b, lb);
        memcpy(p + la + lb, c, lc + 1);
    }
    return p;
}

static double now_monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- URIs ------------------------------------------------------------------------------- */

typedef enum { URI_SCHEME, URI_SCP, URI_PATH } uri_kind;

static uri_kind classify_uri(const char *uri)
{
    const char *colon = strchr(uri, ':');
    if (strstr(uri, "://"))
        return URI_SCHEME;
    /* user@host:path or host:path, as git does: a colon before any slash, not a drive letter */
    if (colon && colon - uri > 1 && memchr(uri, '/', (size_t)(colon - uri)) == NULL)
        return URI_SCP;
    return URI_PATH;
}

/*
 * The URI without its userinfo (keep_user: without the password only) and, for display, without
 * trailing slashes.
 */
static char *strip_userinfo(const char *uri, bool keep_user)
{
    const char *auth, *end, *at = NULL, *colon = NULL, *p;
    char *out;
    size_t len;

    switch (classify_uri(uri)) {
    case URI_SCHEME:
        auth = strstr(uri, "://") + 3;
        end = auth + strcspn(auth, "/?#");
        break;
    case URI_SCP:
        auth = uri;
        end = strchr(uri, ':');
        break;
    default:
        return dup_str(uri);
    }
    for (p = auth; p < end; p++)
        if (*p == '@')
            at = p;
    if (at)
        colon = memchr(auth, ':', (size_t)(at - auth));
    if (!(out = malloc(strlen(uri) + 1)))
        return NULL;
    if (keep_user) {
        /* "user:secret@host" -> "user@host" */
        len = (size_t)((colon ? colon : auth) - uri);
        memcpy(out, uri, len);
        strcpy(out + len, colon ? at : auth);
        return out;
    }
    len = (size_t)(auth - uri);
    memcpy(out, uri, len);
    strcpy(out + len, at ? at + 1 : auth);
    len = strlen(out);
    while (len > 1 && out[len - 1] == '/' && out[len - 2] != '/')
        out[--len] = '\0';
    return out;
}

/* A lexically absolute path; realpath would fail once the remote is gone, and the mirror's
 * name must stay the same then. */
static char *absolute_path(const char *path)
{
    char cwd[PATH_MAX];
    char *out;
    size_t len;

    if (path[0] == '/') {
        out = dup_str(path);
    } else {
        if (!getcwd(cwd, sizeof(cwd)))
            return NULL;
        out = concat3(cwd, "/", strncmp(path, "./", 2) == 0 ? path + 2 : path);
    }
    if (!out)
        return NULL;
    len = strlen(out);
    while (len > 1 && out[len - 1] == '/')
        out[--len] = '\0';
    return out;
}

/* <last path component without .git, [A-Za-z0-9._-] only>-<12 hex of sha256(url)>.git */
static char *mirror_name(const char *url)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char name[65], hex[13];
    const char *base, *end;
    size_t n = 0, len;

    if (!EVP_Digest(url, strlen(url), md, &mdlen, EVP_sha256(), NULL))
        return NULL;
    for (unsigned i = 0; i < 6; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);

    len = strlen(url);
    while (len > 0 && url[len - 1] == '/')
        len--;
    end = url + len;
    if (len >= 4 && strncmp(end - 4, ".git", 4) == 0)
        end -= 4;
    base = end;
    while (base > url && base[-1] != '/' && base[-1] != ':')
        base--;
    for (const char *p = base; p < end && n < sizeof(name) - 1; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '_' || (c == '.' && n > 0);
        name[n++] = ok ? c : '_';
    }
    name[n] = '\0';
    if (n == 0)
        strcpy(name, "repo");
    len = strlen(name) + 1 + strlen(hex) + 5;
    char *out = malloc(len);
    if (out)
        snprintf(out, len, "%s-%s.git", name, hex);
    return out;
}

/* ---- small filesystem helpers --------------------------------------------------------------- */

static int mkdir_p(const char *path, mode_t mode)
{
    char buf[PATH_MAX];
    size_t len = strlen(path);

    if (len == 0 || len >= sizeof(buf))
        return -1;
    memcpy(buf, path, len + 1);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, mode) < 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    if (mkdir(buf, mode) < 0 && errno != EEXIST)
        return -1;
    return 0;
}

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)type;
    (void)ftw;
    remove(path);
    return 0;
}

static void rm_rf(const char *path)
{
    nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/*
 * What killed runs leave behind. A clone interrupted by SIGKILL or a power cut stays in
 * "<mirror>.tmp-XXXXXX" (it never became the mirror: see clone_mirror), and a fetch killed
 * while writing a pack leaves a zero-byte objects/pack/pack_git2_* file. Neither is ever used
 * again; both cost disk (a clone can be large), so they go at start.
 */
static void remove_leftovers(const char *cache, const char *name, const char *mirror_path)
{
    size_t name_len = strlen(name);
    DIR *d = opendir(cache);
    struct dirent *de;
    char *packs = concat3(mirror_path, "/objects/pack", "");

    while (d && (de = readdir(d))) {
        if (strncmp(de->d_name, name, name_len) != 0 ||
            strncmp(de->d_name + name_len, ".tmp-", 5) != 0)
            continue;
        char *path = concat3(cache, "/", de->d_name);
        if (path) {
            LOG_INFO(MODULE, "removing %s, left by an interrupted clone", path);
            rm_rf(path);
        }
        free(path);
    }
    if (d)
        closedir(d);
    d = packs ? opendir(packs) : NULL;
    while (d && (de = readdir(d))) {
        struct stat st;
        if (strncmp(de->d_name, "pack_git2_", 10) != 0 ||
            fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode) ||
            st.st_size != 0)
            continue;
        LOG_INFO(MODULE, "removing %s/%s, an empty pack left by an interrupted fetch", packs,
                 de->d_name);
        unlinkat(dirfd(d), de->d_name, 0);
    }
    if (d)
        closedir(d);
    free(packs);
}

/* ---- credentials ---------------------------------------------------------------------------- */

typedef struct cred_state {
    unsigned tried; /* bit per git_credential_t offered during this fetch */
    char host[256]; /* of the configured URL: credentials go to this host only */
    unsigned port;  /* of the configured URL; 0 when it names none */
    const fetch_policy *policy;
} cred_state;

/* The host of a URL (scheme://[user@]host[:port]/..., [v6] kept in brackets) or of an scp-like
 * [user@]host:path; "" when there is none (a local path). */
static void url_host(const char *url, char *out, size_t size)
{
    const char *start, *end;
    size_t len;

    out[0] = '\0';
    if (!url)
        return;
    if ((start = strstr(url, "://")) != NULL) {
        start += 3;
        end = start + strcspn(start, "/?#");
    } else if (classify_uri(url) == URI_SCP) {
        start = url;
        end = strchr(url, ':');
    } else {
        return;
    }
    for (const char *p = start; p < end; p++)
        if (*p == '@')
            start = p + 1;
    if (*start == '[') {
        const char *close = memchr(start, ']', (size_t)(end - start));
        if (close)
            end = close + 1;
    } else {
        const char *colon = memchr(start, ':', (size_t)(end - start));
        if (colon)
            end = colon;
    }
    len = (size_t)(end - start);
    if (len >= size)
        len = size - 1;
    memcpy(out, start, len);
    out[len] = '\0';
}

/* libgit2 reports a callback's failure with the message set here. */
#if defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
static int cred_refuse(const char *fmt, ...)
{
    va_list ap;
    char msg[600];
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    git_error_set_str(GIT_ERROR_NET, msg);
    return GIT_EAUTH;
}

/* read(2), not stdio, so no buffer we cannot wipe ever holds the secret */
static int read_secret_file(const char *path, char *buf, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    size_t n = 0;

    if (fd < 0)
        return -1;
    while (n < size - 1) {
        ssize_t got = read(fd, buf + n, size - 1 - n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        n += (size_t)got;
    }
    close(fd);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        n--;
    buf[n] = '\0';
    return 0;
}

static int credentials_cb(git_credential **out, const char *url, const char *username_from_url,
                          unsigned int allowed, void *payload)
{
    cred_state *st = payload;
    const char *env_user = getenv("ALMANAC_GIT_USERNAME");
    const char *user = username_from_url && *username_from_url ? username_from_url : env_user;
    int error = GIT_PASSTHROUGH;
    char host[256];

    /* Git (http.followRedirects=initial, curl without unrestricted auth) sends nothing to a
     * host it was redirected to; neither does Almanac. */
    url_host(url, host, sizeof(host));
    if (strcasecmp(host, st->host) != 0)
        return cred_refuse("refusing to send credentials for %s to %s, another host (redirected)",
                           st->host, host);
    /* Offered already and refused by the server: the credential is wrong. */
    if ((allowed & (GIT_CREDENTIAL_SSH_KEY | GIT_CREDENTIAL_USERPASS_PLAINTEXT)) &&
        (st->tried & allowed & (GIT_CREDENTIAL_SSH_KEY | GIT_CREDENTIAL_USERPASS_PLAINTEXT)) ==
            (allowed & (GIT_CREDENTIAL_SSH_KEY | GIT_CREDENTIAL_USERPASS_PLAINTEXT)))
        return cred_refuse("authentication failed for %s", host);

    if ((allowed & GIT_CREDENTIAL_SSH_KEY) && !(st->tried & GIT_CREDENTIAL_SSH_KEY)) {
        const char *key = st->policy->ssh_key ? st->policy->ssh_key
                                              : getenv("ALMANAC_GIT_SSH_KEY_FILE");
        st->tried |= GIT_CREDENTIAL_SSH_KEY;
        if (!user)
            user = "git";
        if (key && *key)
            error = git_credential_ssh_key_new(out, user, NULL, key, NULL);
        else
            error = git_credential_ssh_key_from_agent(out, user);
    } else if ((allowed & GIT_CREDENTIAL_USERPASS_PLAINTEXT) &&
               !(st->tried & GIT_CREDENTIAL_USERPASS_PLAINTEXT)) {
        const char *file = getenv("ALMANAC_GIT_PASSWORD_FILE");
        char secret[1024];
        st->tried |= GIT_CREDENTIAL_USERPASS_PLAINTEXT;
        if (file && *file && strncasecmp(url, "http://", 7) == 0 &&
            !st->policy->allow_insecure_http)
            return cred_refuse("refusing to send the password for %s over plain http:// (use "
                               "https://, or --git-allow-insecure-http)",
                               host);
        if (file && *file && read_secret_file(file, secret, sizeof(secret)) == 0) {
            error = git_credential_userpass_plaintext_new(out, env_user ? env_user : "git", secret);
            OPENSSL_cleanse(secret, sizeof(secret));
        } else if (file && *file) {
            LOG_WARN(MODULE, "cannot read ALMANAC_GIT_PASSWORD_FILE: %s", strerror(errno));
        }
    } else if ((allowed & GIT_CREDENTIAL_USERNAME) && !(st->tried & GIT_CREDENTIAL_USERNAME)) {
        st->tried |= GIT_CREDENTIAL_USERNAME;
        error = git_credential_username_new(out, user ? user : "git");
    }
    return error;
}

/* The port a scheme URL names ("ssh://git@host:2222/x" -> 2222); 0 when none (scp-like too). */
static unsigned url_port(const char *url)
{
    const char *start = url ? strstr(url, "://") : NULL, *end, *colon;
    if (!start)
        return 0;
    start += 3;
    end = start + strcspn(start, "/?#");
    for (const char *p = start; p < end; p++)
        if (*p == '@')
            start = p + 1;
    if (*start == '[') {
        const char *close = memchr(start, ']', (size_t)(end - start));
        start = close ? close + 1 : end;
    }
    colon = memchr(start, ':', (size_t)(end - start));
    if (!colon || colon + 1 >= end)
        return 0;
    unsigned long port = strtoul(colon + 1, NULL, 10);
    return port > 0 && port < 65536 ? (unsigned)port : 0;
}

/* ---- SSH host keys -------------------------------------------------------------------------- */

/* --git-known-hosts, or OpenSSH's per-user file: $HOME, else the account's home directory. */
static int known_hosts_path(const fetch_policy *policy, char *out, size_t size)
{
    const char *home = getenv("HOME");
    if (policy->known_hosts && *policy->known_hosts) {
        snprintf(out, size, "%s", policy->known_hosts);
        return 0;
    }
    if (!home || !*home) {
        struct passwd *pw = getpwuid(getuid());
        home = pw ? pw->pw_dir : NULL;
    }
    if (!home)
        return -1;
    snprintf(out, size, "%s/.ssh/known_hosts", home);
    return 0;
}

/*
 * Almanac's own host key check for ssh://, so the answer does not depend on the libgit2 in use
 * (1.5.0 and older accepted any key when no callback was set; 1.5.1 reads ~/.ssh/known_hosts
 * itself). libgit2's verdict (valid) is ignored either way: the key must be in our file.
 * TLS certificates are left to libgit2, which has checked them against the trusted CAs and the
 * host name.
 */
static int certificate_cb(git_cert *cert, int valid, const char *host, void *payload)
{
    const cred_state *st = payload;
    const git_cert_hostkey *hostkey = (const git_cert_hostkey *)cert;
    char path[PATH_MAX + 64], name[300], bare[256];
    file_contents file = {0};
    known_hosts_result result;
    size_t len;
    int error;

    (void)valid;
    if (cert->cert_type != GIT_CERT_HOSTKEY_LIBSSH2)
        return GIT_PASSTHROUGH;
    /* the host of our URL, not of whatever the transport says: ssh has no redirects, but the
     * name looked up must be the one configured */
    snprintf(bare, sizeof(bare), "%s", st->host[0] ? st->host : (host ? host : ""));
    len = strlen(bare);
    if (len > 2 && bare[0] == '[' && bare[len - 1] == ']') {
        memmove(bare, bare + 1, len - 2);
        bare[len - 2] = '\0';
    }
    if (st->port && st->port != 22)
        snprintf(name, sizeof(name), "[%s]:%u", bare, st->port);
    else
        snprintf(name, sizeof(name), "%s", bare);
    if (!(hostkey->type & GIT_CERT_SSH_RAW) || !hostkey->hostkey || hostkey->hostkey_len == 0)
        return cred_refuse("refusing the SSH host key of %s: the SSH library did not show it",
                           name);
    if (known_hosts_path(st->policy, path, sizeof(path)) < 0)
        return cred_refuse("refusing the SSH host key of %s: no known_hosts file (set "
                           "--git-known-hosts; HOME is not set)",
                           name);
    error = file_read(&file, path, KNOWN_HOSTS_MAX, FILE_READ_REGULAR_ONLY);
    known_hosts_check(error == 0 ? file.data : "", error == 0 ? file.len : 0, bare, st->port,
                      (const unsigned char *)hostkey->hostkey, hostkey->hostkey_len, &result);
    file_contents_dispose(&file);
    if (error < 0)
        return cred_refuse("unknown SSH host key of %s: %s %s (cannot read %s)", name,
                           result.key_type, result.fingerprint, path);
    switch (result.verdict) {
    case KNOWN_HOSTS_MATCH:
        return 0;
    case KNOWN_HOSTS_REVOKED:
        return cred_refuse("REVOKED SSH host key of %s: %s %s (%s line %u)", name,
                           result.key_type, result.fingerprint, path, result.line);
    case KNOWN_HOSTS_CHANGED:
        return cred_refuse("CHANGED SSH host key of %s (possible man-in-the-middle): offered %s "
                           "%s, %s line %u lists another",
                           name, result.key_type, result.fingerprint, path, result.line);
    case KNOWN_HOSTS_UNKNOWN:
    default:
        return cred_refuse("unknown SSH host key of %s: %s %s is not in %s%s", name,
                           result.key_type, result.fingerprint, path,
                           result.other_types ? " (it lists keys of other types)" : "");
    }
}

/* ---- proxy and CAs --------------------------------------------------------------------------- */

static const char *env_first(const char *a, const char *b, const char *c)
{
    const char *names[] = {a, b, c};
    for (size_t i = 0; i < 3; i++) {
        const char *v = names[i] ? getenv(names[i]) : NULL;
        if (v && *v)
            return v;
    }
    return NULL;
}

/*
 * Whether no_proxy (or NO_PROXY) exempts host, as curl reads it: comma- or space-separated names;
 * "*" exempts every host; "example.com" and ".example.com" exempt the name and its subdomains;
 * an address exempts itself only (no CIDR ranges); a ":port" on an entry is ignored.
 */
static bool no_proxy_for(const char *host)
{
    const char *list = env_first("no_proxy", "NO_PROXY", NULL);
    char bare[256];
    size_t hlen;

    if (!list)
        return false;
    snprintf(bare, sizeof(bare), "%s", host);
    hlen = strlen(bare);
    if (hlen > 2 && bare[0] == '[' && bare[hlen - 1] == ']') {
        memmove(bare, bare + 1, hlen - 2);
        bare[hlen -= 2] = '\0';
    }
    for (const char *p = list; *p;) {
        size_t n;
        p += strspn(p, ", \t");
        n = strcspn(p, ", \t");
        if (n == 0)
            break;
        const char *entry = p;
        size_t elen = n;
        p += n;
        if (elen == 1 && entry[0] == '*')
            return true;
        if (entry[0] == '[') { /* [v6]:port */
            const char *close = memchr(entry, ']', elen);
            if (close) {
                entry++;
                elen = (size_t)(close - entry);
            }
        } else if (memchr(entry, ':', elen) && memchr(entry, ':', elen) == memrchr(entry, ':', elen)) {
            elen = (size_t)((const char *)memchr(entry, ':', elen) - entry); /* name:port */
        }
        if (elen > 0 && entry[0] == '.') {
            entry++;
            elen--;
        }
        if (elen == 0 || elen > hlen)
            continue;
        if (strncasecmp(bare + hlen - elen, entry, elen) == 0 &&
            (elen == hlen || bare[hlen - elen - 1] == '.'))
            return true;
    }
    return false;
}

/*
 * The proxy for a fetch of url, or NULL for none. Only http(s) remotes can use one (libgit2's SSH
 * transport connects directly). --git-proxy wins over the environment; the environment is read
 * as git and curl read it: https_proxy / HTTPS_PROXY for https://, http_proxy for http:// (not
 * HTTP_PROXY, which a CGI program could be handed by a client), then all_proxy / ALL_PROXY.
 * no_proxy applies to --git-proxy too: it names hosts reached directly whoever set the proxy.
 */
static const char *proxy_for(const char *url, const fetch_policy *policy, const char *host)
{
    const char *proxy;
    bool https = strncasecmp(url, "https://", 8) == 0;

    if (!https && strncasecmp(url, "http://", 7) != 0)
        return NULL;
    if (policy->proxy && *policy->proxy)
        proxy = policy->proxy;
    else if (https)
        proxy = env_first("https_proxy", "HTTPS_PROXY", NULL);
    else
        proxy = env_first("http_proxy", NULL, NULL);
    if (!proxy)
        proxy = env_first("all_proxy", "ALL_PROXY", NULL);
    if (!proxy || no_proxy_for(host))
        return NULL;
    return proxy;
}

/*
 * Adds --git-ca-file to the CAs trusted for https://. libgit2 has one setting for this, and
 * what it does depends on its TLS library: with OpenSSL it adds to the default store, with
 * mbedTLS (Debian's build) it replaces the whole trusted set. So the system's certificate
 * directory (OpenSSL's default, or SSL_CERT_DIR) is always passed with the file: both libraries
 * then trust the system's CAs and the file's. Process-wide: in the server this runs in fetch
 * workers only, each bound to one --git-ca-file (see the worker process below).
 */
/* 1: the file holds a PEM certificate, 0: none (empty, or comments only), -1: unreadable. */
static int ca_file_has_certificate(const char *ca_file)
{
    file_contents file = {0};
    int found;
    if (file_read(&file, ca_file, CA_FILE_MAX, FILE_READ_REGULAR_ONLY) < 0)
        return -1;
    found = file.len > 0 && strstr(file.data, "-----BEGIN CERTIFICATE-----") != NULL;
    file_contents_dispose(&file);
    return found;
}

static int apply_ca_file(const char *ca_file, char *why, size_t why_size)
{
    const char *dir = getenv(X509_get_default_cert_dir_env());
    struct stat st;
    int has = 0;

    if (!ca_file || !*ca_file)
        return 0;
    errno = 0;
    if (!dir || !*dir)
        dir = X509_get_default_cert_dir();
    if (!dir || stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
        dir = NULL;
    if (access(ca_file, R_OK) < 0 || (has = ca_file_has_certificate(ca_file)) < 0) {
        snprintf(why, why_size, "cannot read --git-ca-file %s: %s", ca_file,
                 errno ? strerror(errno) : "not a regular file");
        return -1;
    }
    /* A file with no certificate (the Kubernetes template's) adds nothing: repo_open warned. */
    if (has == 0)
        return 0;
    if (git_libgit2_opts(GIT_OPT_SET_SSL_CERT_LOCATIONS, ca_file, dir) < 0) {
        snprintf(why, why_size, "cannot use --git-ca-file %s: %s", ca_file, git_reason());
        return -1;
    }
    return 0;
}

/* ---- refs and status ------------------------------------------------------------------------ */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* SHA-256 over the sorted "name target" lines of every ref: equal digests, same refs. */
static int refs_digest(git_repository *g, unsigned char out[32])
{
    git_reference_iterator *it = NULL;
    git_reference *ref = NULL;
    char **lines = NULL;
    size_t n = 0, cap = 0;
    EVP_MD_CTX *ctx = NULL;
    int error = -1;

    if (git_reference_iterator_new(&it, g) < 0)
        goto out;
    while (git_reference_next(&ref, it) == 0) {
        char hex[GIT_OID_HEXSZ + 1] = "";
        const char *target = hex;
        char *line;
        if (git_reference_type(ref) == GIT_REFERENCE_DIRECT)
            git_oid_tostr(hex, sizeof(hex), git_reference_target(ref));
        else
            target = git_reference_symbolic_target(ref);
        if (n == cap) {
            char **grown;
            if (cap >= REFS_MAX)
                goto out;
            cap = cap ? cap * 2 : 64;
            grown = realloc(lines, cap * sizeof(*lines));
            if (!grown)
                goto out;
            lines = grown;
        }
        line = concat3(git_reference_name(ref), " ", target ? target : "");
        if (!line)
            goto out;
        lines[n++] = line;
        git_reference_free(ref);
        ref = NULL;
    }
    if (n)
        qsort(lines, n, sizeof(*lines), cmp_str);
    if (!(ctx = EVP_MD_CTX_new()) || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL))
        goto out;
    for (size_t i = 0; i < n; i++)
        if (!EVP_DigestUpdate(ctx, lines[i], strlen(lines[i]) + 1))
            goto out;
    if (!EVP_DigestFinal_ex(ctx, out, NULL))
        goto out;
    error = 0;
out:
    git_reference_free(ref);
    git_reference_iterator_free(it);
    for (size_t i = 0; i < n; i++)
        free(lines[i]);
    free(lines);
    EVP_MD_CTX_free(ctx);
    return error;
}

static bool branch_exists(git_repository *g, const char *name)
{
    git_reference *ref = NULL;
    char refname[LABEL_MAX + 16];
    bool found;

    snprintf(refname, sizeof(refname), "refs/heads/%s", name);
    found = git_reference_lookup(&ref, g, refname) == 0;
    git_reference_free(ref);
    return found;
}

static void status_after_fetch(repo *r, git_repository *g, bool ok, bool timed_out,
                               const char *why, time_t when)
{
    const char *label = r->default_label;
    if (!label && g) { /* without a handle (see repo_fetch) the old value stays */
        if (branch_exists(g, "main"))
            label = "main";
        else if (branch_exists(g, "master"))
            label = "master";
        else if (!r->status.default_label[0]) /* both gone: keep naming the one that went */
            label = "main";
    }

    pthread_mutex_lock(&r->status_lock);
    r->status.last_fetch_attempt = when;
    r->status.timed_out = !ok && timed_out;
    if (ok) {
        r->status.last_fetch_ok = when;
        r->status.degraded = false;
        r->status.last_error[0] = '\0';
    } else {
        r->status.degraded = true;
        snprintf(r->status.last_error, sizeof(r->status.last_error), "%s", why);
    }
    if (label)
        snprintf(r->status.default_label, sizeof(r->status.default_label), "%s", label);
    pthread_mutex_unlock(&r->status_lock);
}

/* ---- the default branch's last commit ------------------------------------------------------ */

/*
 * A deleted or renamed default branch is far more often an accident than a wish, and answering
 * 404 to every booting service for it turns one mistake into an outage. So after every good
 * fetch the commit the default label resolves to is pinned under PIN_REF (outside the fetch
 * refspecs, so pruning never touches it, and a ref, so a repack keeps its objects); when the
 * branch is gone, "no label" resolves to the pin and health says what happened. An explicit
 * label naming the gone branch still answers 404. A force-push that moves the branch elsewhere
 * is served: it is how a configuration is rolled back.
 */
#define PIN_REF "refs/almanac/default"

static int lookup_served(repo *r, git_repository *g, const char *label, git_oid *id);
static void verify_branch_tips(repo *r, git_repository *g);
static json_t *verified_commits_save(repo *r, git_repository *g);
static void verified_commits_restore(git_repository *g, json_t *saved);
static bool label_ok(const char *label);

/* The default label's commit: 0 found, 1 the branch (main/master, or --default-label) is gone. */
static int lookup_default(repo *r, git_repository *g, git_oid *id)
{
    int found;

    if (r->default_label)
        return label_ok(r->default_label) ? lookup_served(r, g, r->default_label, id) : 1;
    found = lookup_served(r, g, "main", id);
    if (found == 1)
        found = lookup_served(r, g, "master", id);
    return found;
}

/* Called under fetch_lock after a good fetch into g. */
static void pin_default(repo *r, git_repository *g)
{
    git_reference *ref = NULL;
    git_oid id, pinned;
    char hex[GIT_OID_HEXSZ + 1];
    bool have_pin = git_reference_name_to_id(&pinned, g, PIN_REF) == 0;
    int found = lookup_default(r, g, &id);

    if (found == 0) {
        if (!have_pin || !git_oid_equal(&id, &pinned)) {
            if (git_reference_create(&ref, g, PIN_REF, &id, 1, "almanac: default label") < 0)
                LOG_WARN(MODULE, "cannot record the default label's commit: %s", git_reason());
            git_reference_free(ref);
        }
        pthread_mutex_lock(&r->status_lock);
        bool was_gone = r->status.default_gone[0] != '\0';
        r->status.default_gone[0] = '\0';
        pthread_mutex_unlock(&r->status_lock);
        if (was_gone)
            LOG_INFO(MODULE, "the default label %s is back on %s", r->status.default_label,
                     r->display_uri);
        return;
    }
    if (found != 1 || !have_pin)
        return;
    git_oid_tostr(hex, sizeof(hex), &pinned);
    pthread_mutex_lock(&r->status_lock);
    bool news = r->status.default_gone[0] == '\0';
    if (news) {
        char when[32] = "";
        time_t now = time(NULL);
        struct tm tm;
        if (gmtime_r(&now, &tm))
            strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
        snprintf(r->status.default_gone, sizeof(r->status.default_gone),
                 "branch %.100s is gone from the remote (seen %s); serving its last commit %s",
                 r->status.default_label, when, hex);
    }
    pthread_mutex_unlock(&r->status_lock);
    if (news)
        LOG_WARN(MODULE, "the default branch %s is gone from %s: still serving its last commit %s",
                 r->status.default_label, r->display_uri, hex);
}

/* ---- fetching ------------------------------------------------------------------------------- */

/*
 * Deletes tags that do not lead to a commit. They are never labels, and while one exists every
 * later fetch from a local (file://) remote fails: libgit2's local transport (1.5 to at least
 * 1.9) hides each of our refs from its walk and takes "not a committish" for a fatal error.
 */
static int drop_non_commit_tags(git_repository *g)
{
    git_reference_iterator *it = NULL;
    git_reference *ref = NULL;
    int error;

    if ((error = git_reference_iterator_glob_new(&it, g, "refs/tags/*")) < 0)
        return error;
    while ((error = git_reference_next(&ref, it)) == 0) {
        git_object *obj = NULL;
        int peeled = git_reference_type(ref) == GIT_REFERENCE_DIRECT
                         ? git_reference_peel(&obj, ref, GIT_OBJECT_COMMIT)
                         : 0;
        /* only "not a commit": an unreadable object is no reason to lose a tag */
        if (peeled == GIT_EPEEL || peeled == GIT_EINVALIDSPEC) {
            LOG_DEBUG(MODULE, "dropping %s: it does not name a commit", git_reference_name(ref));
            if ((error = git_reference_delete(ref)) < 0)
                break;
        }
        git_object_free(obj);
        git_reference_free(ref);
        ref = NULL;
    }
    git_reference_free(ref);
    git_reference_iterator_free(it);
    return error == GIT_ITEROVER ? 0 : error;
}

static atomic_bool fetches_cancelled;

/* The fetch workers running now (busy or idle), for repo_cancel_fetches. */
#define CHILDREN_MAX 64
static pthread_mutex_t children_lock = PTHREAD_MUTEX_INITIALIZER;
static pid_t children[CHILDREN_MAX];

void repo_cancel_fetches(void)
{
    atomic_store(&fetches_cancelled, true);
    pthread_mutex_lock(&children_lock);
    for (size_t i = 0; i < CHILDREN_MAX; i++)
        if (children[i] > 0)
            kill(children[i], SIGKILL);
    pthread_mutex_unlock(&children_lock);
}

/* libgit2 calls these as a transfer goes on; non-zero stops it. */
static int progress_cb(const git_indexer_progress *stats, void *payload)
{
    (void)stats;
    (void)payload;
    return atomic_load(&fetches_cancelled) ? GIT_EUSER : 0;
}

static int sideband_cb(const char *str, int len, void *payload)
{
    (void)str;
    (void)len;
    (void)payload;
    return atomic_load(&fetches_cancelled) ? GIT_EUSER : 0;
}

/*
 * Fetches url into g. On failure, why holds libgit2's reason.
 *
 * The remote is anonymous (in memory) and skips url.<base>.insteadOf: libgit2 1.5 leaks a
 * PCRE2 match block for every config entry that fails the insteadOf pattern each time a named
 * remote is looked up (fixed upstream in 1.6), which a server that fetches every few seconds
 * cannot afford.
 */
static int fetch_into(git_repository *g, const char *url, const fetch_policy *policy, bool *changed,
                      char *why, size_t why_size)
{
    char heads[] = "+refs/heads/*:refs/heads/*", tags[] = "+refs/tags/*:refs/tags/*";
    char *specs[] = {heads, tags}; /* git_strarray wants char **, libgit2 only reads them */
    const git_strarray refspecs = {specs, 2};
    git_remote_create_options ropts;
    git_fetch_options opts;
    git_remote *remote = NULL;
    cred_state creds = {0};
    unsigned char before[32], after[32];
    int error;

    *changed = false;
    creds.policy = policy;
    url_host(url, creds.host, sizeof(creds.host));
    creds.port = url_port(url);
    /* the _INIT macros trip -Wmissing-field-initializers; the functions do the same */
    git_remote_create_options_init(&ropts, GIT_REMOTE_CREATE_OPTIONS_VERSION);
    ropts.repository = g;
    ropts.flags = GIT_REMOTE_CREATE_SKIP_INSTEADOF | GIT_REMOTE_CREATE_SKIP_DEFAULT_FETCHSPEC;
    git_fetch_options_init(&opts, GIT_FETCH_OPTIONS_VERSION);
    opts.prune = GIT_FETCH_PRUNE;
    opts.download_tags = GIT_REMOTE_DOWNLOAD_TAGS_ALL;
    opts.callbacks.credentials = credentials_cb;
    opts.callbacks.certificate_check = certificate_cb;
    opts.callbacks.payload = &creds;
    /* our choice, or none: never libgit2's own reading of http.proxy and the environment */
    const char *proxy = proxy_for(url, policy, creds.host);
    opts.proxy_opts.type = proxy ? GIT_PROXY_SPECIFIED : GIT_PROXY_NONE;
    opts.proxy_opts.url = proxy;
    opts.callbacks.transfer_progress = progress_cb;
    opts.callbacks.sideband_progress = sideband_cb;
    if (atomic_load(&fetches_cancelled)) {
        snprintf(why, why_size, "cancelled: the server is stopping");
        return -1;
    }
    if (apply_ca_file(policy->ca_file, why, why_size) < 0)
        return -1;

#ifdef ALMANAC_LSAN
    /* libgit2 1.5.1 leaks, on every SSH connection, its libssh2 known-hosts handle and the path
     * it read it from (before any callback of ours runs), and the copy it makes of a proxy URL;
     * LeakSanitizer would fail each such fetch process of a sanitizer build. Our own callbacks
     * free what they allocate within the call. */
    bool libgit2_leaks = proxy != NULL || strncmp(url, "ssh://", 6) == 0 ||
               strncmp(url, "ssh+git://", 10) == 0 || strncmp(url, "git+ssh://", 10) == 0 ||
               classify_uri(url) == URI_SCP;
    if (libgit2_leaks)
        __lsan_disable();
#endif
    if ((error = refs_digest(g, before)) < 0 ||
        (error = git_remote_create_with_opts(&remote, url, &ropts)) < 0 ||
        (error = git_remote_fetch(remote, &refspecs, &opts, "almanac: fetch")) < 0 ||
        (error = drop_non_commit_tags(g)) < 0 || (error = refs_digest(g, after)) < 0) {
#ifdef ALMANAC_LSAN
        if (libgit2_leaks)
            __lsan_enable();
#endif
        snprintf(why, why_size, "%s",
                 error == GIT_EUSER ? "cancelled: the server is stopping" : git_reason());
        goto out;
    }
#ifdef ALMANAC_LSAN
    if (libgit2_leaks)
        __lsan_enable();
#endif
    *changed = memcmp(before, after, sizeof(before)) != 0;
out:
    git_remote_free(remote);
    return error;
}

/* ---- bounded fetches: the worker process ---------------------------------------------------- */

/*
 * What a killed fetch can leave in a mirror: lock files (FETCH_HEAD.lock, packed-refs.lock,
 * refs/heads/x.lock) that would make every later fetch fail, and temporary files of a pack being
 * received. Removing them is safe only while no fetch runs, which fetch_lock (or, at open, the
 * fact that nobody else knows the mirror yet) ensures.
 */
static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static int leftover_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    const char *name = path + ftw->base;
    bool in_objects = strstr(path, "/objects/") != NULL;
    (void)st;
    if (type != FTW_F)
        return 0;
    /* packs are pack-<hex>.{pack,idx,rev,...}; libgit2's indexer receives into other names */
    if (ends_with(name, ".lock") ||
        (in_objects && (strncmp(name, "tmp_", 4) == 0 || strstr(name, "_git2_") != NULL ||
                        (strstr(path, "/objects/pack/") && strncmp(name, "pack-", 5) != 0)))) {
        if (unlink(path) == 0)
            LOG_INFO(MODULE, "removed %s, left by an abandoned fetch", path);
    }
    return 0;
}

static void remove_fetch_leftovers(const char *git_dir)
{
    nftw(git_dir, leftover_entry, 16, FTW_PHYS);
}

/*
 * A fetch worker is this program started as `git-fetch --serve`. It pays for loading its
 * libraries and initialising libgit2 (the system's CA bundle included) once, then answers fetch
 * orders on the Unix socket it has as descriptor 0, one at a time: an order is one line of JSON
 * (git_dir, url, timeout, allow_insecure_http, and the transport: ca_file, proxy, known_hosts,
 * ssh_key, each null when unset; members it does not know are ignored, so a new option is one
 * more member), the answer one line, "ok 0", "ok 1" (refs moved) or "error MESSAGE". The mirror
 * comes with each order, so one worker serves any repository. Nothing of an order is on a
 * command line or in an environment, which other local users can read (a proxy URL may carry a
 * password); credentials themselves are read from their files at each fetch, as the server
 * would. The worker opens the mirror afresh for every order (the server moves refs and repacks
 * between fetches) and keeps nothing between orders but libgit2's global state, of which only
 * the trusted CAs depend on the order: a worker applies its first order's --git-ca-file and
 * then serves orders with that one only (the server's pool matches workers on it).
 */
static void worker_answer(const char *word, const char *text)
{
    char line[CHILD_REPORT_MAX];
    size_t len, done = 0;

    snprintf(line, sizeof(line) - 1, "%s %s", word, text);
    /* one line: the server reads up to the first newline */
    for (char *p = line; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    len = strlen(line);
    line[len++] = '\n';
    while (done < len) {
        ssize_t n = write(STDIN_FILENO, line + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            _exit(1); /* the server is gone */
        done += (size_t)n;
    }
}

/*
 * The server closing its end (it exited, or was killed even by SIGKILL) ends the worker, even in
 * the middle of a fetch. Not PR_SET_PDEATHSIG: that follows the thread that started the worker,
 * and a worker outlives the fetch (and maybe the thread) it was started for.
 */
static void *worker_watch_server(void *unused)
{
    struct pollfd pfd = {.fd = STDIN_FILENO, .events = POLLRDHUP};
    (void)unused;
    for (;;) {
        if (poll(&pfd, 1, -1) > 0 && (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)))
            _exit(1);
    }
    return NULL;
}

/* A string member of an order; NULL when absent or null. */
static const char *order_string(json_t *order, const char *key)
{
    return json_string_value(json_object_get(order, key));
}

/* A copy of a transport setting of an order (the policy owns its strings); false: no memory. */
static bool order_setting(json_t *order, const char *key, char **out)
{
    const char *value = order_string(order, key);
    *out = value ? strdup(value) : NULL;
    return !value || *out;
}

static bool same_setting(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static void worker_serve_order(const char *text, char **ca_applied, bool *ca_known)
{
    json_error_t jerr;
    json_t *order = json_loads(text, 0, &jerr);
    json_t *timeout_json = json_object_get(order, "timeout");
    const char *git_dir = order_string(order, "git_dir"), *url = order_string(order, "url");
    json_int_t timeout = json_is_integer(timeout_json) ? json_integer_value(timeout_json) : 0;
    fetch_policy policy = {0};
    git_repository *g = NULL;
    char why[256] = "";
    bool changed = false;

    if (!git_dir || !url || timeout <= 0) {
        worker_answer("error", "git-fetch: a malformed order");
        json_decref(order);
        return;
    }
    policy.allow_insecure_http = json_is_true(json_object_get(order, "allow_insecure_http"));
    if (!order_setting(order, "ca_file", &policy.ca_file) ||
        !order_setting(order, "proxy", &policy.proxy) ||
        !order_setting(order, "known_hosts", &policy.known_hosts) ||
        !order_setting(order, "ssh_key", &policy.ssh_key)) {
        worker_answer("error", "git-fetch: out of memory");
        goto out;
    }
    /* the trusted CAs are process-wide: the first order decides them (see above) */
    if (*ca_known && !same_setting(*ca_applied, policy.ca_file)) {
        worker_answer("error", "git-fetch: an order for another --git-ca-file");
        goto out;
    }
    if (!*ca_known) {
        *ca_known = true;
        *ca_applied = policy.ca_file ? strdup(policy.ca_file) : NULL;
    }
    /* The server kills this process at the deadline; this covers a server that cannot. */
    alarm((unsigned)(timeout > 86400 ? 86400 : timeout) + 5);
    git_error_clear();
    if (git_repository_open_bare(&g, git_dir) < 0) {
        snprintf(why, sizeof(why), "cannot open the mirror in %s: %s", git_dir, git_reason());
        worker_answer("error", why);
    } else if (fetch_into(g, url, &policy, &changed, why, sizeof(why)) < 0) {
        worker_answer("error", why);
    } else {
        worker_answer("ok", changed ? "1" : "0");
    }
    alarm(0);
    git_repository_free(g);
out:
    free(policy.ca_file);
    free(policy.proxy);
    free(policy.known_hosts);
    free(policy.ssh_key);
    json_decref(order);
}

int repo_fetch_child_main(int argc, char **argv)
{
    long parent = 0;
    bool serve = false, ca_known = false;
    pthread_t watcher;
    FILE *orders;
    char *line = NULL, *ca_applied = NULL;
    size_t cap = 0;

    /* The server's descriptors (client sockets among them) are not ours to keep open. */
    closefrom(3);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--serve") == 0)
            serve = true;
        else if (strcmp(argv[i], "--parent") == 0 && i + 1 < argc)
            parent = strtol(argv[++i], NULL, 10);
    }
    if (!serve || parent <= 0 || getppid() != (pid_t)parent) {
        fprintf(stderr, "almanac-server git-fetch: started by almanac-server only (--serve "
                        "--parent PID, orders on descriptor 0)\n");
        return 2;
    }
    if (pthread_create(&watcher, NULL, worker_watch_server, NULL) != 0 ||
        !(orders = fdopen(STDIN_FILENO, "r")))
        return 1;
    git_libgit2_init();
    while (getline(&line, &cap, orders) > 0)
        worker_serve_order(line, &ca_applied, &ca_known);
    free(line);
    free(ca_applied);
    return 0; /* the server closed its end: no more orders */
}

/* ---- bounded fetches: the server's side ----------------------------------------------------- */

/*
 * Workers are pooled across repositories: a fetch takes an idle one (or starts one when none is
 * idle, as for the first fetch or fetches of several repositories at once), sends its order,
 * waits for the answer until --git-timeout and gives the worker back. A worker that misses the
 * deadline or dies is killed, its mirror cleaned of what it may have left, and a fresh one is
 * started at once, so the next fetch does not pay for starting a process either.
 */
#define WORKERS_IDLE_MAX 8      /* idle workers kept; more are ended */
#define WORKER_ORDERS_MAX 1000  /* orders before a worker is retired (bounds any slow leak) */

typedef struct fetch_worker {
    pid_t pid;
    int sock;        /* our end of its socket: orders out, answers in */
    unsigned orders; /* answered so far */
    char program[PATH_MAX];
    char ca_file[PATH_MAX]; /* the --git-ca-file it serves ("" none): its trusted CAs */
} fetch_worker;

/* Whether w runs program and trusts what ca_file (NULL: none) asks for. */
static bool worker_fits(const fetch_worker *w, const char *program, const char *ca_file)
{
    return strcmp(w->program, program) == 0 && strcmp(w->ca_file, ca_file ? ca_file : "") == 0;
}

static fetch_worker idle_workers[WORKERS_IDLE_MAX]; /* under children_lock */
static size_t idle_count;

static long ms_until(double deadline)
{
    double left = deadline - now_monotonic();
    return left <= 0 ? 0 : (long)(left * 1000.0) + 1;
}

/* Starts a worker running program, registered in children so that repo_cancel_fetches ends it. */
static int worker_start(const char *program, const char *ca_file, fetch_worker *w, char *why,
                        size_t why_size)
{
    char cmd[] = "git-fetch", o_serve[] = "--serve", o_parent[] = "--parent", parent_text[24];
    char *args[] = {w->program, cmd, o_serve, o_parent, parent_text, NULL};
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    sigset_t none, defaults;
    int sv[2], rc;
    size_t slot = CHILDREN_MAX;
    bool cancelled;
    pid_t pid = 0;

    memset(w, 0, sizeof(*w));
    w->sock = -1;
    if (strlen(program) >= sizeof(w->program) ||
        (ca_file && strlen(ca_file) >= sizeof(w->ca_file))) {
        snprintf(why, why_size, "cannot start a fetch: a path is too long");
        return -1;
    }
    strcpy(w->program, program);
    strcpy(w->ca_file, ca_file ? ca_file : "");
    snprintf(parent_text, sizeof(parent_text), "%ld", (long)getpid());
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        snprintf(why, why_size, "cannot start a fetch: %s", strerror(errno));
        return -1;
    }
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, sv[1], STDIN_FILENO);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    posix_spawnattr_init(&attr);
    /* the server blocks its signals in every thread (main.c waits for them) and ignores
     * SIGPIPE: the worker must do neither */
    sigemptyset(&none);
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGTERM);
    sigaddset(&defaults, SIGINT);
    sigaddset(&defaults, SIGHUP);
    sigaddset(&defaults, SIGALRM);
    sigaddset(&defaults, SIGPIPE);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

    pthread_mutex_lock(&children_lock);
    cancelled = atomic_load(&fetches_cancelled);
    for (size_t i = 0; i < CHILDREN_MAX && slot == CHILDREN_MAX; i++)
        if (children[i] == 0)
            slot = i;
    rc = cancelled ? 0
         : slot == CHILDREN_MAX ? EAGAIN
                                : posix_spawn(&pid, w->program, &actions, &attr, args, environ);
    if (!cancelled && rc == 0)
        children[slot] = pid;
    pthread_mutex_unlock(&children_lock);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    close(sv[1]);
    if (cancelled || rc != 0) {
        close(sv[0]);
        if (cancelled)
            snprintf(why, why_size, "cancelled: the server is stopping");
        else
            snprintf(why, why_size, "cannot start %s: %s", w->program, strerror(rc));
        return -1;
    }
    w->pid = pid;
    w->sock = sv[0];
    LOG_DEBUG(MODULE, "started fetch worker %ld", (long)pid);
    return 0;
}

/* Kills (whatever it was doing), reaps and forgets a worker; returns its wait status. */
static int worker_end(fetch_worker *w)
{
    int wstatus = 0;

    kill(w->pid, SIGKILL);
    /* not reaped yet, so the pid cannot have been reused when it is cleared */
    pthread_mutex_lock(&children_lock);
    for (size_t i = 0; i < CHILDREN_MAX; i++)
        if (children[i] == w->pid)
            children[i] = 0;
    pthread_mutex_unlock(&children_lock);
    close(w->sock);
    while (waitpid(w->pid, &wstatus, 0) < 0 && errno == EINTR)
        ;
    w->pid = 0;
    w->sock = -1;
    return wstatus;
}

/* Puts a worker in the idle pool, or ends it when the pool is full or the server stopping. */
static void worker_park(fetch_worker *w)
{
    bool kept = false;

    pthread_mutex_lock(&children_lock);
    if (idle_count < WORKERS_IDLE_MAX && !atomic_load(&fetches_cancelled)) {
        idle_workers[idle_count++] = *w;
        kept = true;
    }
    pthread_mutex_unlock(&children_lock);
    if (!kept)
        worker_end(w);
}

/* Starts a spare worker unless a fitting one is idle already. */
static void worker_prestart(const char *program, const char *ca_file)
{
    fetch_worker w;
    char why[256];
    bool idle = false;

    pthread_mutex_lock(&children_lock);
    for (size_t i = 0; i < idle_count && !idle; i++)
        idle = worker_fits(&idle_workers[i], program, ca_file);
    pthread_mutex_unlock(&children_lock);
    if (idle)
        return;
    if (worker_start(program, ca_file, &w, why, sizeof(why)) < 0) {
        if (!atomic_load(&fetches_cancelled))
            LOG_WARN(MODULE, "cannot start a spare fetch worker: %s", why);
        return;
    }
    worker_park(&w);
}

/* An idle worker says nothing: anything to read (above all an end of file) means it is gone. */
static bool worker_idle_ok(const fetch_worker *w)
{
    struct pollfd pfd = {.fd = w->sock, .events = POLLIN | POLLRDHUP};
    return poll(&pfd, 1, 0) == 0;
}

/* A fitting idle worker, or a new one. */
static int worker_take(const char *program, const char *ca_file, fetch_worker *w, char *why,
                       size_t why_size)
{
    for (;;) {
        bool found = false;
        pthread_mutex_lock(&children_lock);
        for (size_t i = idle_count; i-- > 0 && !found;) {
            if (worker_fits(&idle_workers[i], program, ca_file)) {
                *w = idle_workers[i];
                idle_workers[i] = idle_workers[--idle_count];
                found = true;
            }
        }
        pthread_mutex_unlock(&children_lock);
        if (!found)
            return worker_start(program, ca_file, w, why, why_size);
        if (worker_idle_ok(w))
            return 0;
        LOG_INFO(MODULE, "fetch worker %ld ended while idle; using another", (long)w->pid);
        worker_end(w);
    }
}

/* The order for one fetch of r->url into git_dir, as one line. */
static char *worker_order(const repo *r, const char *git_dir)
{
    json_t *order = json_pack("{s:s, s:s, s:I, s:b, s:s?, s:s?, s:s?, s:s?}", "git_dir", git_dir,
                              "url", r->url, "timeout", (json_int_t)r->git_timeout,
                              "allow_insecure_http", r->policy.allow_insecure_http, "ca_file",
                              r->policy.ca_file, "proxy", r->policy.proxy, "known_hosts",
                              r->policy.known_hosts, "ssh_key", r->policy.ssh_key);
    char *text = order ? json_dumps(order, JSON_COMPACT) : NULL;
    char *line = text ? concat3(text, "\n", "") : NULL;
    json_decref(order);
    free(text);
    return line;
}

static int send_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/*
 * Runs one fetch of r->url into git_dir in a worker, killed at r->git_timeout. *timed_out
 * tells a deadline apart from any other failure (why says which).
 */
static int fetch_in_worker(repo *r, const char *git_dir, bool *changed, char *why,
                           size_t why_size, bool *timed_out)
{
    double deadline = now_monotonic() + r->git_timeout;
    char *order = worker_order(r, git_dir);
    char answer[CHILD_REPORT_MAX + 1];
    size_t got = 0;
    bool complete = false, expired = false, cancelled;
    fetch_worker w;
    int error = -1, wstatus;

    *changed = false;
    *timed_out = false;
    if (!order) {
        snprintf(why, why_size, "out of memory");
        return -1;
    }
    for (int attempt = 0;; attempt++) {
        if (worker_take(r->fetch_program, r->policy.ca_file, &w, why, why_size) < 0)
            goto out;
        if (send_all(w.sock, order, strlen(order)) == 0)
            break;
        /* it went between the check and the order: nothing was fetched, another may try */
        snprintf(why, why_size, "cannot hand the fetch to a worker: %s", strerror(errno));
        worker_end(&w);
        if (attempt > 0)
            goto out;
    }

    /* Read the answer until its newline, the worker's end of file, or the deadline. */
    while (!complete) {
        struct pollfd pfd = {.fd = w.sock, .events = POLLIN};
        long wait_ms = ms_until(deadline);
        int rc;
        if (wait_ms == 0) {
            expired = true;
            break;
        }
        rc = poll(&pfd, 1, wait_ms > 1000000 ? 1000000 : (int)wait_ms);
        if (rc <= 0)
            continue; /* EINTR, or the deadline, checked above */
        ssize_t n = read(w.sock, answer + got, CHILD_REPORT_MAX - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* the worker is gone */
        got += (size_t)n;
        complete = memchr(answer, '\n', got) != NULL;
        if (!complete && got == CHILD_REPORT_MAX)
            break; /* not an answer */
    }
    answer[got] = '\0';
    answer[strcspn(answer, "\n")] = '\0';

    if (complete) {
        w.orders++;
        if (w.orders < WORKER_ORDERS_MAX) {
            worker_park(&w);
        } else {
            worker_end(&w);
            worker_prestart(r->fetch_program, r->policy.ca_file);
        }
        if (strncmp(answer, "ok ", 3) == 0) {
            *changed = answer[3] == '1';
            error = 0;
        } else {
            const char *text = strncmp(answer, "error ", 6) == 0 ? answer + 6 : answer;
            size_t n = strnlen(text, why_size - 1); /* a long reason is cut short */
            memcpy(why, text, n);
            why[n] = '\0';
        }
        goto out;
    }

    wstatus = worker_end(&w);
    cancelled = atomic_load(&fetches_cancelled);
    if (cancelled)
        snprintf(why, why_size, "cancelled: the server is stopping");
    else if (expired) {
        *timed_out = true;
        snprintf(why, why_size, "fetch timed out after %u s", r->git_timeout);
    } else {
        snprintf(why, why_size, "the fetch process ended abnormally (%s %d)",
                 WIFSIGNALED(wstatus) ? "signal" : "status",
                 WIFSIGNALED(wstatus) ? WTERMSIG(wstatus) : WEXITSTATUS(wstatus));
    }
    remove_fetch_leftovers(git_dir);
    if (!cancelled)
        worker_prestart(r->fetch_program, r->policy.ca_file);
out:
    free(order);
    return error;
}

/* One fetch of r->url into g (whose directory is git_dir), bounded when a program is set. */
static int run_fetch(repo *r, git_repository *g, char *git_dir, bool *changed, char *why,
                     size_t why_size, bool *timed_out)
{
    *timed_out = false;
    if (r->fetch_program)
        return fetch_in_worker(r, git_dir, changed, why, why_size, timed_out);
    return fetch_into(g, r->url, &r->policy, changed, why, why_size);
}


/* Records the remote in the mirror's config, so that the git CLI can inspect and fetch it. */
static int describe_remote(git_repository *g, const char *url)
{
    git_config *cfg = NULL;
    int error;

    if ((error = git_repository_config(&cfg, g)) == 0 &&
        (error = git_config_set_string(cfg, "remote." REMOTE_NAME ".url", url)) == 0 &&
        (error = git_config_set_string(cfg, "remote." REMOTE_NAME ".fetch",
                                       "+refs/heads/*:refs/heads/*")) == 0 &&
        (error = git_config_set_string(cfg, "remote." REMOTE_NAME ".tagOpt", "--tags")) == 0)
        error = git_config_set_bool(cfg, "remote." REMOTE_NAME ".prune", true);
    git_config_free(cfg);
    return error;
}

/* Initialises a bare repository beside the mirror's path and fetches into it: *tmp_out is that
 * directory (caller frees it and renames or removes the directory). An interrupted clone stays
 * a "<mirror>.tmp-*" that never looks like a mirror and is removed at the next start. */
static int clone_to_temp(repo *r, char **tmp_out, char *why, size_t why_size, bool *timed_out)
{
    git_repository_init_options init;
    git_repository *g = NULL;
    char *tmp = concat3(r->mirror_path, ".tmp-", "XXXXXX");
    bool changed, made = false;
    int error = -1;

    *tmp_out = NULL;

    if (!tmp) {
        snprintf(why, why_size, "out of memory");
        goto out;
    }
    if (!mkdtemp(tmp)) {
        snprintf(why, why_size, "cannot create %s: %s", tmp, strerror(errno));
        goto out;
    }
    made = true;
    git_repository_init_options_init(&init, GIT_REPOSITORY_INIT_OPTIONS_VERSION);
    init.flags = GIT_REPOSITORY_INIT_BARE | GIT_REPOSITORY_INIT_NO_REINIT;
    if (git_repository_init_ext(&g, tmp, &init) < 0 || describe_remote(g, r->url) < 0) {
        snprintf(why, why_size, "%s", git_reason());
        goto out;
    }
    if (run_fetch(r, g, tmp, &changed, why, why_size, timed_out) < 0)
        goto out;
    made = false;
    *tmp_out = tmp;
    tmp = NULL;
    error = 0;
out:
    git_repository_free(g);
    if (made)
        rm_rf(tmp);
    free(tmp);
    return error;
}

/* First run: clone beside the final path, then rename it into place. */
static int clone_mirror(repo *r, char *why, size_t why_size, bool *timed_out)
{
    char *tmp = NULL;
    int error = clone_to_temp(r, &tmp, why, why_size, timed_out);

    if (error == 0 && rename(tmp, r->mirror_path) < 0) {
        snprintf(why, why_size, "cannot move mirror into %s: %s", r->mirror_path, strerror(errno));
        rm_rf(tmp);
        error = -1;
    }
    free(tmp);
    return error;
}

/* ---- closing every handle ------------------------------------------------------------------- */

/*
 * libgit2 shares an open pack between all handles by its path, and keeps it (its descriptor
 * and maps) until the last handle using it is freed. A thread that sits idle keeps its handle,
 * so packs deleted by a repack stayed open (the disk held twice the pack), and a re-cloned
 * mirror, whose packs have the same names, would have been read through the damaged ones. So
 * the fetcher (under fetch_lock) holds readers off for a moment and closes every thread's
 * handle; each reopens on its next call. Readers hold handles_lock only for reading, and no
 * read call makes another (a writer waiting would otherwise deadlock the reader).
 */
static void hold_readers(repo *r)
{
    pthread_rwlock_wrlock(&r->handles_lock);
    pthread_mutex_lock(&r->slots_lock);
    for (repo_slot *s = r->slots; s; s = s->next) {
        git_repository_free(s->git);
        s->git = NULL;
    }
    pthread_mutex_unlock(&r->slots_lock);
    git_repository_free(r->fetch_git);
    r->fetch_git = NULL;
    atomic_fetch_add(&r->generation, 1);
}

static void release_readers(repo *r)
{
    pthread_rwlock_unlock(&r->handles_lock);
}

/* ---- repacking ------------------------------------------------------------------------------ */

/*
 * Every fetch that brings objects adds a pack, and libgit2 has no gc: a server that fetches
 * all day would collect thousands, each one more file to search and to hold open per thread.
 * Past REPACK_THRESHOLD packs, everything reachable from a ref is written into one new pack
 * and the others are deleted (which also drops what pruned refs left unreachable).
 *
 * Readers may still hold the old packs: on Linux an open or mapped file outlives its unlink,
 * libgit2 skips a pack whose files vanished while it searches, and the generation bump makes
 * every reader reopen its handle on its next call.
 */

static bool is_pack_file(const char *name, const char *ext)
{
    size_t n = strlen(name), e = strlen(ext);
    return strncmp(name, "pack-", 5) == 0 && n > 5 + e && strcmp(name + n - e, ext) == 0;
}

static size_t count_packs(const char *mirror)
{
    char *dir = concat3(mirror, "/objects/pack", "");
    DIR *d = dir ? opendir(dir) : NULL;
    struct dirent *de;
    size_t n = 0;

    while (d && (de = readdir(d)))
        if (is_pack_file(de->d_name, ".pack"))
            n++;
    if (d)
        closedir(d);
    free(dir);
    return n;
}

/* Adds what ref id points at: a commit to the walk, tags (and what they tag) to the pack. */
static int repack_add(git_repository *g, git_packbuilder *pb, git_revwalk *walk, const git_oid *id)
{
    git_object *obj = NULL;
    int error, depth = 0;

    if ((error = git_object_lookup(&obj, g, id, GIT_OBJECT_ANY)) < 0)
        return error;
    while (git_object_type(obj) == GIT_OBJECT_TAG && depth++ < 16) {
        git_object *target = NULL;
        if ((error = git_packbuilder_insert(pb, git_object_id(obj), NULL)) < 0 ||
            (error = git_tag_target(&target, (git_tag *)obj)) < 0)
            goto out;
        git_object_free(obj);
        obj = target;
    }
    if (git_object_type(obj) == GIT_OBJECT_COMMIT)
        error = git_revwalk_push(walk, git_object_id(obj));
    else
        error = git_packbuilder_insert_recur(pb, git_object_id(obj), NULL);
out:
    git_object_free(obj);
    return error;
}

/* Deletes every pack but keep ("pack-<keep>.*"): the index first, so no scan sees half a pack. */
static void delete_packs_but(const char *mirror, const char *keep)
{
    static const char *const exts[] = {".idx", ".rev", ".pack"};
    char *dir = concat3(mirror, "/objects/pack", "");
    DIR *d = dir ? opendir(dir) : NULL;
    int dfd = d ? dirfd(d) : -1;
    struct dirent *de;

    for (size_t i = 0; d && i < sizeof(exts) / sizeof(exts[0]); i++) {
        rewinddir(d);
        while ((de = readdir(d))) {
            if (!is_pack_file(de->d_name, exts[i]) ||
                (strncmp(de->d_name + 5, keep, strlen(keep)) == 0 &&
                 strcmp(de->d_name + 5 + strlen(keep), exts[i]) == 0))
                continue;
            if (unlinkat(dfd, de->d_name, 0) < 0)
                LOG_WARN(MODULE, "cannot delete %s/%s: %s", dir, de->d_name, strerror(errno));
        }
    }
    if (d)
        closedir(d);
    free(dir);
}

/*
 * Called under fetch_lock. Failure leaves the old packs alone. A repack that failed (a full
 * disk, typically, where it used to burn half a minute of CPU on every fetch while refresh
 * waited) is not tried again for REPACK_RETRY_SECONDS, nor before a restart; meanwhile health
 * says DEGRADED with the reason and almanac_git_repack_total{result="failed"} counts it.
 */
static void maybe_repack(repo *r)
{
    git_packbuilder *pb = NULL;
    git_revwalk *walk = NULL;
    git_reference_iterator *it = NULL;
    git_reference *ref = NULL;
    git_repository *g = r->fetch_git;
    size_t packs = count_packs(r->mirror_path);
    const char *name;
    int error;

    if (packs <= REPACK_THRESHOLD ||
        (r->repack_failed_at > 0 && now_monotonic() - r->repack_failed_at < REPACK_RETRY_SECONDS))
        return;
    if ((error = git_packbuilder_new(&pb, g)) < 0 || (error = git_revwalk_new(&walk, g)) < 0 ||
        (error = git_reference_iterator_new(&it, g)) < 0)
        goto out;
    while ((error = git_reference_next(&ref, it)) == 0) {
        if (git_reference_type(ref) == GIT_REFERENCE_DIRECT)
            error = repack_add(g, pb, walk, git_reference_target(ref));
        git_reference_free(ref);
        ref = NULL;
        if (error < 0)
            goto out;
    }
    if (error != GIT_ITEROVER)
        goto out;
    if ((error = git_packbuilder_insert_walk(pb, walk)) < 0 ||
        (error = git_packbuilder_write(pb, NULL, 0, NULL, NULL)) < 0)
        goto out;
    if (!(name = git_packbuilder_name(pb))) {
        error = -1;
        goto out;
    }
    delete_packs_but(r->mirror_path, name);
    /* every handle lets go of the old packs, so that their space is freed now */
    git_packbuilder_free(pb);
    pb = NULL;
    git_revwalk_free(walk);
    walk = NULL;
    git_reference_iterator_free(it);
    it = NULL;
    hold_readers(r);
    release_readers(r);
    g = NULL;
    error = git_repository_open_bare(&r->fetch_git, r->mirror_path);
    if (error == 0)
        LOG_INFO(MODULE, "repacked %zu packs of %s into one", packs, r->display_uri);
out:
    if (error < 0 && error != GIT_ITEROVER) {
        char why[sizeof(r->status.repack_error)];
        snprintf(why, sizeof(why), "cannot merge the mirror's %zu packs into one: %.200s; tried "
                 "again in %.0f min or at restart", packs, git_reason(), REPACK_RETRY_SECONDS / 60);
        LOG_WARN(MODULE, "%s", why);
        r->repack_failed_at = now_monotonic();
        metrics_repack(false);
        pthread_mutex_lock(&r->status_lock);
        snprintf(r->status.repack_error, sizeof(r->status.repack_error), "%s", why);
        pthread_mutex_unlock(&r->status_lock);
    } else if (error == 0) {
        r->repack_failed_at = 0;
        metrics_repack(true);
        pthread_mutex_lock(&r->status_lock);
        r->status.repack_error[0] = '\0';
        pthread_mutex_unlock(&r->status_lock);
    }
    git_reference_iterator_free(it);
    git_revwalk_free(walk);
    git_packbuilder_free(pb);
}

/* ---- damage and repair ---------------------------------------------------------------------- */

/*
 * A damaged mirror (a truncated or flipped pack, a missing index, a garbage ref; see
 * mirror_check.h) is never repaired in place: the remote is cloned again into a fresh folder
 * beside it, the two are swapped and the damaged one is removed. Meanwhile the snapshots and
 * answers held in memory keep being served. The check runs thoroughly at start, cheaply after
 * a fetch fails (so that a garbage ref is not blamed on the remote), and in the background
 * when a read fails in a way that may mean damage (suspect_damage).
 */

static void set_mirror_damaged(repo *r, const char *text)
{
    pthread_mutex_lock(&r->status_lock);
    snprintf(r->status.mirror_damaged, sizeof(r->status.mirror_damaged), "%s", text);
    pthread_mutex_unlock(&r->status_lock);
}

/* The commits being served, whose trees a thorough check reads: the default label's and its
 * pin (they differ while the default branch is gone). */
static size_t served_commits(repo *r, git_repository *g, git_oid out[2])
{
    size_t n = 0;
    if (lookup_default(r, g, &out[n]) == 0)
        n++;
    if (git_reference_name_to_id(&out[n], g, PIN_REF) == 0)
        n++;
    return n;
}

/* 1 (and r->damage says what) when the mirror in g is damaged; 0 otherwise, also when the
 * check could not run (logged: the mirror is not blamed for that). */
static int check_mirror(repo *r, git_repository *g, bool thorough)
{
    git_oid served[2];
    size_t n = thorough ? served_commits(r, g, served) : 0;
    int verdict = mirror_check(g, r->mirror_path, thorough, served, n, r->damage,
                               sizeof(r->damage));
    if (verdict < 0)
        LOG_WARN(MODULE, "cannot check the mirror in %s: %s", r->mirror_path, r->damage);
    return verdict == 1;
}

/* Swaps the directories a and b (one may be renamed onto the other's place). */
static int swap_dirs(const char *fresh, const char *mirror, char **old_out)
{
    char *aside;

    *old_out = NULL;
    if (renameat2(AT_FDCWD, fresh, AT_FDCWD, mirror, RENAME_EXCHANGE) == 0) {
        *old_out = dup_str(fresh); /* the damaged mirror is where the fresh clone was */
        return *old_out ? 0 : -1;
    }
    /* a file system without RENAME_EXCHANGE: the damaged one aside, then the fresh one in */
    if (!(aside = concat3(mirror, ".tmp-", "XXXXXX")) || !mkdtemp(aside) ||
        rename(mirror, aside) < 0) {
        if (aside)
            rmdir(aside);
        free(aside);
        return -1;
    }
    if (rename(fresh, mirror) < 0) {
        int saved = errno;
        rename(aside, mirror);
        free(aside);
        errno = saved;
        return -1;
    }
    *old_out = aside;
    return 0;
}

/*
 * Called under fetch_lock, or before r is shared. Clones the remote into a fresh folder, swaps
 * it with the damaged mirror and removes that one. The pin of the default branch's last commit
 * moves over when the new clone has its commit. Failure keeps the damaged mirror (part of it
 * may still be readable) and leaves needs_repair set: the next fetch tries again.
 */
static int repair_mirror(repo *r)
{
    char why[256] = "", text[sizeof(r->status.mirror_damaged)];
    char *fresh = NULL, *old = NULL;
    bool timed_out = false, have_pin;
    git_oid pin;
    git_reference *ref = NULL;
    double started = now_monotonic();

    have_pin = r->fetch_git && git_reference_name_to_id(&pin, r->fetch_git, PIN_REF) == 0;
    json_t *verified = verified_commits_save(r, r->fetch_git);
    snprintf(text, sizeof(text), "mirror damaged: %s, re-cloning", r->damage);
    set_mirror_damaged(r, text);
    LOG_WARN(MODULE, "the mirror in %s is damaged (%s): cloning %s again", r->mirror_path,
             r->damage, r->display_uri);
    atomic_store(&r->needs_repair, true);
    if (clone_to_temp(r, &fresh, why, sizeof(why), &timed_out) < 0) {
        if (timed_out)
            metrics_git_fetch_timeout(now_monotonic() - started);
        else
            metrics_git_fetch(false, now_monotonic() - started);
        metrics_mirror_repair(false);
        snprintf(text, sizeof(text), "mirror damaged: %.140s; cloning again failed (%.100s), "
                 "tried again at the next fetch", r->damage, why);
        set_mirror_damaged(r, text);
        LOG_WARN(MODULE, "cannot clone %s again (%s): serving what the damaged mirror still "
                 "holds", r->display_uri, why);
        json_decref(verified);
        return -1;
    }
    metrics_git_fetch(true, now_monotonic() - started);
    hold_readers(r);
    int swapped = swap_dirs(fresh, r->mirror_path, &old), swap_errno = errno;
    release_readers(r);
    if (swapped < 0) {
        snprintf(why, sizeof(why), "cannot move the new clone into %s: %s", r->mirror_path,
                 strerror(swap_errno));
        rm_rf(fresh);
        if (git_repository_open_bare(&r->fetch_git, r->mirror_path) < 0)
            LOG_WARN(MODULE, "cannot reopen the mirror in %s: %s", r->mirror_path, git_reason());
        free(fresh);
        metrics_mirror_repair(false);
        snprintf(text, sizeof(text), "mirror damaged: %.140s; %.150s", r->damage, why);
        set_mirror_damaged(r, text);
        LOG_WARN(MODULE, "%s", why);
        json_decref(verified);
        return -1;
    }
    free(fresh);
    if (git_repository_open_bare(&r->fetch_git, r->mirror_path) < 0) {
        LOG_WARN(MODULE, "cannot open the new mirror in %s: %s", r->mirror_path, git_reason());
    } else if (have_pin) {
        git_odb *odb = NULL;
        if (git_repository_odb(&odb, r->fetch_git) == 0 && git_odb_exists(odb, &pin) &&
            git_reference_create(&ref, r->fetch_git, PIN_REF, &pin, 1, "almanac: re-clone") < 0)
            LOG_WARN(MODULE, "cannot record the default label's commit: %s", git_reason());
        git_odb_free(odb);
    }
    if (r->fetch_git)
        verified_commits_restore(r->fetch_git, verified);
    rm_rf(old);
    free(old);
    atomic_store(&r->needs_repair, false);
    r->damage[0] = '\0';
    set_mirror_damaged(r, "");
    metrics_mirror_repair(true);
    status_after_fetch(r, r->fetch_git, r->fetch_git != NULL, false, "", time(NULL));
    if (r->fetch_git) {
        metrics_set_last_fetch_ok((double)time(NULL));
        verify_branch_tips(r, r->fetch_git);
        pin_default(r, r->fetch_git);
    }
    LOG_INFO(MODULE, "cloned %s again into %s; the damaged mirror is removed", r->display_uri,
             r->mirror_path);
    git_reference_free(ref);
    json_decref(verified);
    return 0;
}

/* The background check a read error starts: thorough, under fetch_lock. The error's own kind
 * counts too: a zlib stream that does not inflate is damage even where the bounded check did
 * not look. */
typedef struct suspect_job {
    repo *r;
    bool error_means_damage;
    char error[160]; /* the reader's libgit2 error: this thread has its own */
} suspect_job;

static void *suspect_main(void *arg)
{
    suspect_job *job = arg;
    repo *r = job->r;
    git_repository *g = NULL;
    bool damaged = false;

    pthread_mutex_lock(&r->fetch_lock);
    if (atomic_load(&r->needs_repair)) {
        damaged = false; /* known, and the next fetch clones again: not once per read error */
    } else if (git_repository_open_bare(&g, r->mirror_path) < 0) {
        snprintf(r->damage, sizeof(r->damage), "it cannot be opened (%s)", git_reason());
        damaged = true;
    } else {
        damaged = check_mirror(r, g, true);
        if (!damaged && job->error_means_damage) {
            snprintf(r->damage, sizeof(r->damage), "a read failed: %s", job->error);
            damaged = true;
        }
    }
    git_repository_free(g);
    if (damaged)
        repair_mirror(r);
    pthread_mutex_unlock(&r->fetch_lock);
    if (!damaged && !atomic_load(&r->needs_repair)) {
        pthread_mutex_lock(&r->repair_lock);
        r->last_sound_check = now_monotonic();
        pthread_mutex_unlock(&r->repair_lock);
    }
    atomic_store(&r->repair_running, false);
    free(job);
    return NULL;
}

/* A read failed with a Git error: start a check in the background unless one runs, or one
 * found the mirror sound a moment ago (a request that fails for another reason must not keep
 * the disk busy). Never blocks the reader. */
static void suspect_damage(repo *r)
{
    bool expected = false;
    suspect_job *job;

    if (!r->is_git || r->in_place || atomic_load(&r->needs_repair))
        return;
    bool means_damage = mirror_error_means_damage();
    pthread_mutex_lock(&r->repair_lock);
    if (r->last_sound_check > 0 && !means_damage &&
        now_monotonic() - r->last_sound_check < SUSPECT_CHECK_INTERVAL)
        goto out;
    if (!atomic_compare_exchange_strong(&r->repair_running, &expected, true))
        goto out;
    if (r->repair_thread_started)
        pthread_join(r->repair_thread, NULL); /* it has finished: repair_running was false */
    r->repair_thread_started = false;
    if (!(job = calloc(1, sizeof(*job)))) {
        atomic_store(&r->repair_running, false);
        goto out;
    }
    job->r = r;
    job->error_means_damage = means_damage;
    snprintf(job->error, sizeof(job->error), "%s", git_reason());
    if (pthread_create(&r->repair_thread, NULL, suspect_main, job) != 0) {
        free(job);
        atomic_store(&r->repair_running, false);
        goto out;
    }
    r->repair_thread_started = true;
    LOG_INFO(MODULE, "a read of the mirror failed (%s): checking it in the background",
             git_reason());
out:
    pthread_mutex_unlock(&r->repair_lock);
}

int repo_fetch(repo *r, bool *changed)
{
    char why[256] = "";
    bool moved = false, was_degraded, timed_out = false;
    double started;
    int error = 0;

    if (changed)
        *changed = false;
    if (!r->is_git)
        return 0;

    pthread_mutex_lock(&r->fetch_lock);
    pthread_mutex_lock(&r->status_lock);
    was_degraded = r->status.degraded;
    pthread_mutex_unlock(&r->status_lock);

    if (atomic_load(&r->needs_repair)) { /* damaged, the last re-clone failed: a fetch cannot heal it */
        bool repaired = repair_mirror(r) == 0;
        pthread_mutex_unlock(&r->fetch_lock);
        if (changed)
            *changed = repaired;
        return repaired ? 0
                        : err_set(ERR_UNAVAILABLE, "the mirror of %s is damaged and cannot be "
                                  "cloned again yet", r->display_uri);
    }
    started = now_monotonic();
    if (!r->fetch_git && git_repository_open_bare(&r->fetch_git, r->mirror_path) < 0) {
        /* only after a repack could not reopen it; tried again on every fetch */
        snprintf(why, sizeof(why), "cannot open the mirror in %s: %s", r->mirror_path,
                 git_reason());
        error = ERR_GIT;
    } else if (run_fetch(r, r->fetch_git, r->mirror_path, &moved, why, sizeof(why),
                         &timed_out) < 0) {
        error = ERR_UNAVAILABLE;
        /* a garbage ref fails the fetch too: that is our disk, not the remote */
        if (!timed_out && check_mirror(r, r->fetch_git, false)) {
            if (repair_mirror(r) == 0) {
                error = 0;
                moved = true;
                why[0] = '\0';
            } else {
                snprintf(why, sizeof(why), "the mirror is damaged (%.200s)", r->damage);
                error = ERR_GIT;
            }
        }
    } else if (moved && r->fetch_program) {
        /* another process wrote the new packs and refs: start from a fresh view of them */
        git_repository_free(r->fetch_git);
        r->fetch_git = NULL;
        if (git_repository_open_bare(&r->fetch_git, r->mirror_path) < 0)
            LOG_WARN(MODULE, "cannot reopen the mirror in %s: %s", r->mirror_path, git_reason());
    }
    if (timed_out)
        metrics_git_fetch_timeout(now_monotonic() - started);
    else
        metrics_git_fetch(error == 0, now_monotonic() - started);
    status_after_fetch(r, r->fetch_git, error == 0, timed_out, why, time(NULL));

    /* a remote that stays down is logged when it goes, not on every poll */
    if (error < 0 && !was_degraded)
        LOG_WARN(MODULE, "cannot fetch from %s, serving the cached mirror: %s", r->display_uri,
                 why);
    else if (error < 0)
        LOG_DEBUG(MODULE, "still cannot fetch from %s: %s", r->display_uri, why);
    else if (was_degraded)
        LOG_INFO(MODULE, "%s is reachable again", r->display_uri);
    /* even after a failed fetch: one killed between two ref updates moved some refs */
    if (r->fetch_git)
        verify_branch_tips(r, r->fetch_git);
    if (error == 0) {
        metrics_set_last_fetch_ok((double)time(NULL));
        pin_default(r, r->fetch_git);
    }
    if (moved) {
        atomic_fetch_add(&r->generation, 1);
        LOG_INFO(MODULE, "fetched new refs from %s", r->display_uri);
        if (r->fetch_git)
            maybe_repack(r);
    }
    pthread_mutex_unlock(&r->fetch_lock);

    if (changed)
        *changed = moved;
    if (error == ERR_GIT)
        return err_set(error, "%s", why);
    if (error < 0)
        return err_set(error, "cannot fetch from %s: %s", r->display_uri, why);
    return 0;
}

/* ---- per-thread handles --------------------------------------------------------------------- */

static void slot_unlink(repo *r, repo_slot *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        r->slots = s->next;
    if (s->next)
        s->next->prev = s->prev;
}

/* pthread key destructor: the thread that used the slot is exiting. */
static void slot_destroy(void *p)
{
    repo_slot *s = p;
    pthread_mutex_lock(&s->owner->slots_lock);
    slot_unlink(s->owner, s);
    pthread_mutex_unlock(&s->owner->slots_lock);
    git_repository_free(s->git);
    free(s);
}

/* This thread's handle on the mirror, reopened after a fetch moved refs. */
static int thread_git(repo *r, git_repository **out)
{
    repo_slot *s = pthread_getspecific(r->slot_key);
    unsigned long gen = atomic_load(&r->generation);

    if (!s) {
        if (!(s = calloc(1, sizeof(*s))))
            return err_set(ERR_NOMEM, "out of memory");
        s->owner = r;
        if (pthread_setspecific(r->slot_key, s) != 0) {
            free(s);
            return err_set(ERR_NOMEM, "out of memory");
        }
        pthread_mutex_lock(&r->slots_lock);
        s->next = r->slots;
        if (r->slots)
            r->slots->prev = s;
        r->slots = s;
        pthread_mutex_unlock(&r->slots_lock);
    }
    if (s->git && s->generation != gen) {
        git_repository_free(s->git);
        s->git = NULL;
    }
    if (!s->git) {
        if (git_repository_open_bare(&s->git, r->mirror_path) < 0)
            return err_set(ERR_GIT, "cannot open the mirror of %s: %s", r->display_uri,
                           git_reason());
        s->generation = gen;
    }
    *out = s->git;
    return 0;
}

/* ---- open and free -------------------------------------------------------------------------- */

static int open_dir(repo *r, const char *path)
{
    struct stat st;
    char *real = realpath(path, NULL);

    if (!real || stat(real, &st) < 0 || !S_ISDIR(st.st_mode)) {
        int code = err_set(ERR_CONFIG, "dir:%s is not a readable directory: %s", path,
                           real ? "not a directory" : strerror(errno));
        free(real);
        return code;
    }
    r->root = real;
    if (!(r->display_uri = concat3("file:", real, "")))
        return err_set(ERR_NOMEM, "out of memory");
    snprintf(r->status.default_label, sizeof(r->status.default_label), "%s",
             r->default_label ? r->default_label : "main");
    LOG_INFO(MODULE, "serving the directory %s", real);
    return 0;
}

static int open_git(repo *r, const repo_options *opts)
{
    char why[256] = "";
    char *name = NULL, *cache = NULL, *fetch_head = NULL;
    struct stat st;
    bool exists, moved = false, timed_out = false, repaired = false;
    double started;
    int error = 0;

    switch (classify_uri(opts->uri)) {
    case URI_PATH:
        r->url = absolute_path(opts->uri);
        r->display_uri = r->url ? concat3("file://", r->url, "") : NULL;
        break;
    case URI_SCHEME:
    case URI_SCP:
        /* Passwords come from the environment only, never from the URI; an ssh user name
         * (git@...) is not a secret and is needed, an http(s) one comes with the password. */
        r->url = strip_userinfo(opts->uri, strncmp(opts->uri, "http://", 7) != 0 &&
                                               strncmp(opts->uri, "https://", 8) != 0);
        r->display_uri = strip_userinfo(opts->uri, false);
        break;
    }
    if (!r->url || !r->display_uri) {
        error = err_set(ERR_NOMEM, "out of memory");
        goto out;
    }
    if (strncasecmp(r->url, "http://", 7) == 0 && getenv("ALMANAC_GIT_PASSWORD_FILE") &&
        *getenv("ALMANAC_GIT_PASSWORD_FILE") && !r->policy.allow_insecure_http) {
        error = err_set(ERR_CONFIG,
                        "refusing to send the password of ALMANAC_GIT_PASSWORD_FILE to %s over "
                        "plain http://: use https://, or --git-allow-insecure-http",
                        r->display_uri);
        goto out;
    }
    if (!opts->cache_dir || !*opts->cache_dir) {
        error = err_set(ERR_INTERNAL, "no cache directory for the mirror of %s", r->display_uri);
        goto out;
    }
    if (mkdir_p(opts->cache_dir, 0700) < 0) {
        error = err_set(ERR_INTERNAL, "cannot create the cache directory %s: %s", opts->cache_dir,
                        strerror(errno));
        goto out;
    }
    /* absolute, so that nothing depends on the working directory staying put */
    if (!(cache = realpath(opts->cache_dir, NULL))) {
        error = err_set(ERR_INTERNAL, "cannot resolve the cache directory %s: %s", opts->cache_dir,
                        strerror(errno));
        goto out;
    }
    if (!(name = mirror_name(r->url)) || !(r->mirror_path = concat3(cache, "/", name))) {
        error = err_set(ERR_NOMEM, "out of memory");
        goto out;
    }

    remove_leftovers(cache, name, r->mirror_path);
    exists = stat(r->mirror_path, &st) == 0;
    if (exists)
        remove_fetch_leftovers(r->mirror_path); /* a process killed mid-fetch */
    if (exists && git_repository_open_bare(&r->fetch_git, r->mirror_path) < 0) {
        LOG_WARN(MODULE, "the mirror in %s is unusable (%s); cloning again", r->mirror_path,
                 git_reason());
        rm_rf(r->mirror_path);
        exists = false;
    }

    /* the whole check at start: a damaged mirror used to be opened and answer 500 for ever */
    if (exists && check_mirror(r, r->fetch_git, true) && repair_mirror(r) == 0)
        repaired = true;

    started = now_monotonic();
    if (repaired) {
        LOG_INFO(MODULE, "opened the mirror of %s in %s", r->display_uri, r->mirror_path);
    } else if (!exists) {
        LOG_INFO(MODULE, "cloning %s into %s", r->display_uri, r->mirror_path);
        if (clone_mirror(r, why, sizeof(why), &timed_out) < 0) {
            if (timed_out)
                metrics_git_fetch_timeout(now_monotonic() - started);
            else
                metrics_git_fetch(false, now_monotonic() - started);
            error = err_set(ERR_UNAVAILABLE, "cannot reach %s: %s, and no cached mirror in %s",
                            r->display_uri, why, opts->cache_dir);
            goto out;
        }
        if (git_repository_open_bare(&r->fetch_git, r->mirror_path) < 0) {
            error =
                err_set(ERR_GIT, "cannot open the mirror in %s: %s", r->mirror_path, git_reason());
            goto out;
        }
        metrics_git_fetch(true, now_monotonic() - started);
        status_after_fetch(r, r->fetch_git, true, false, "", time(NULL));
        metrics_set_last_fetch_ok((double)time(NULL));
        verify_branch_tips(r, r->fetch_git);
        pin_default(r, r->fetch_git);
    } else if (run_fetch(r, r->fetch_git, r->mirror_path, &moved, why, sizeof(why),
                         &timed_out) < 0) {
        if (timed_out)
            metrics_git_fetch_timeout(now_monotonic() - started);
        else
            metrics_git_fetch(false, now_monotonic() - started);
        LOG_WARN(MODULE, "cannot reach %s (%s): serving the cached mirror in %s (degraded)",
                 r->display_uri, why, r->mirror_path);
        status_after_fetch(r, r->fetch_git, false, timed_out, why, time(NULL));
        /* what the mirror holds is as old as its last good fetch, even an earlier run's */
        if (!(fetch_head = concat3(r->mirror_path, "/FETCH_HEAD", ""))) {
            error = err_set(ERR_NOMEM, "out of memory");
            goto out;
        }
        if (stat(fetch_head, &st) == 0)
            r->status.last_fetch_ok = st.st_mtime; /* no other thread knows r yet */
        verify_branch_tips(r, r->fetch_git); /* the refs as an earlier run left them */
    } else {
        if (moved && r->fetch_program) {
            git_repository_free(r->fetch_git);
            r->fetch_git = NULL;
            if (git_repository_open_bare(&r->fetch_git, r->mirror_path) < 0) {
                error = err_set(ERR_GIT, "cannot open the mirror in %s: %s", r->mirror_path,
                                git_reason());
                goto out;
            }
        }
        metrics_git_fetch(true, now_monotonic() - started);
        status_after_fetch(r, r->fetch_git, true, false, "", time(NULL));
        metrics_set_last_fetch_ok((double)time(NULL));
        verify_branch_tips(r, r->fetch_git);
        pin_default(r, r->fetch_git);
        LOG_INFO(MODULE, "opened the mirror of %s in %s", r->display_uri, r->mirror_path);
        maybe_repack(r); /* a mirror left by an earlier run may have collected packs */
    }
out:
    free(fetch_head);
    free(cache);
    free(name);
    return error;
}

int repo_open(repo **out, const repo_options *opts)
{
    repo *r = NULL;
    int error = 0;

    *out = NULL;
    if (!opts || !opts->uri || !*opts->uri)
        return err_set(ERR_INTERNAL, "no repository URI");
    if (!(r = calloc(1, sizeof(*r))))
        return err_set(ERR_NOMEM, "out of memory");
    pthread_mutex_init(&r->fetch_lock, NULL);
    pthread_mutex_init(&r->slots_lock, NULL);
    pthread_mutex_init(&r->status_lock, NULL);
    pthread_mutex_init(&r->repair_lock, NULL);
    atomic_init(&r->needs_repair, false);
    pthread_rwlockattr_t handles_attr;
    pthread_rwlockattr_init(&handles_attr);
    /* a repack or re-clone must get in while requests keep coming */
    pthread_rwlockattr_setkind_np(&handles_attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&r->handles_lock, &handles_attr);
    pthread_rwlockattr_destroy(&handles_attr);
    atomic_init(&r->repair_running, false);
    r->git_timeout = opts->git_timeout ? opts->git_timeout : DEFAULT_GIT_TIMEOUT;
    r->policy.allow_insecure_http = opts->allow_insecure_http;
    if ((opts->transport.ca_file && *opts->transport.ca_file &&
         !(r->policy.ca_file = dup_str(opts->transport.ca_file))) ||
        (opts->transport.proxy && *opts->transport.proxy &&
         !(r->policy.proxy = dup_str(opts->transport.proxy))) ||
        (opts->transport.known_hosts && *opts->transport.known_hosts &&
         !(r->policy.known_hosts = dup_str(opts->transport.known_hosts))) ||
        (opts->transport.ssh_key && *opts->transport.ssh_key &&
         !(r->policy.ssh_key = dup_str(opts->transport.ssh_key))) ||
        (opts->fetch_program && !(r->fetch_program = dup_str(opts->fetch_program)))) {
        error = err_set(ERR_NOMEM, "out of memory");
        goto out;
    }
    atomic_init(&r->generation, 0);
    pthread_rwlock_init(&r->labels_lock, NULL);
    r->labels = json_object();
    r->max_file_bytes = opts->max_file_bytes ? opts->max_file_bytes : DEFAULT_MAX_FILE;
    if (opts->default_label && *opts->default_label &&
        !(r->default_label = dup_str(opts->default_label))) {
        error = err_set(ERR_NOMEM, "out of memory");
        goto out;
    }

    pthread_mutex_init(&r->verdicts_lock, NULL);
    if (opts->allowed_signers_file) {
        if (strncmp(opts->uri, "dir:", 4) == 0) {
            error = err_set(ERR_CONFIG, "a dir: source has no commits to verify "
                                        "(--verify-commits needs a Git repository)");
            goto out;
        }
        if ((error = allowed_signers_load(&r->signers, opts->allowed_signers_file)) < 0)
            goto out;
        if (!(r->verdicts = json_object()) || !(r->refused = json_object())) {
            error = err_set(ERR_NOMEM, "out of memory");
            goto out;
        }
    }

    if (strncmp(opts->uri, "dir:", 4) == 0) {
        error = open_dir(r, opts->uri + 4);
        goto out;
    }

    r->is_git = true;
    r->status.is_git = true;
    if (opts->in_place) {
        /* Offline reading of a clone the caller owns: labels are expected as commit ids. */
        git_libgit2_init();
        r->libgit2_up = true;
        if (pthread_key_create(&r->slot_key, slot_destroy) != 0) {
            error = err_set(ERR_INTERNAL, "cannot create a thread key");
            goto out;
        }
        r->slot_key_ok = true;
        git_repository *found = NULL;
        if (git_repository_open_ext(&found, opts->uri, 0, NULL) < 0) {
            error = err_set(ERR_NOT_FOUND, "%s is not a Git repository: %s", opts->uri,
                            git_reason());
            goto out;
        }
        r->in_place = true;
        r->mirror_path = dup_str(git_repository_path(found));
        r->display_uri = r->mirror_path ? concat3("file://", r->mirror_path, "") : NULL;
        git_repository_free(found);
        if (!r->mirror_path || !r->display_uri)
            error = err_set(ERR_NOMEM, "out of memory");
        goto out;
    }
    /* libgit2 counts these: each repo holds it up until repo_free */
    git_libgit2_init();
    r->libgit2_up = true;
    /* every reader thread opens the packs it touches; bound the descriptors libgit2 keeps open
     * (it closes the least recently used beyond this) */
    git_libgit2_opts(GIT_OPT_SET_MWINDOW_FILE_LIMIT, (size_t)256);
    if (pthread_key_create(&r->slot_key, slot_destroy) != 0) {
        error = err_set(ERR_INTERNAL, "cannot create a thread key");
        goto out;
    }
    r->slot_key_ok = true;
    if (r->policy.ca_file && ca_file_has_certificate(r->policy.ca_file) == 0)
        LOG_WARN(MODULE, "--git-ca-file %s holds no PEM certificate: only the system's CAs are "
                         "trusted", r->policy.ca_file);
    error = open_git(r, opts);
out:
    if (error < 0) {
        repo_free(r);
        return error;
    }
    *out = r;
    return 0;
}

void repo_free(repo *r)
{
    repo_slot *s, *next;

    if (!r)
        return;
    if (r->repair_thread_started) /* a re-clone ends at once after repo_cancel_fetches */
        pthread_join(r->repair_thread, NULL);
    /* After the key is deleted no destructor runs; the list holds every live thread's slot. */
    if (r->slot_key_ok)
        pthread_key_delete(r->slot_key);
    for (s = r->slots; s; s = next) {
        next = s->next;
        git_repository_free(s->git);
        free(s);
    }
    git_repository_free(r->fetch_git);
    if (r->libgit2_up)
        git_libgit2_shutdown();
    pthread_mutex_destroy(&r->fetch_lock);
    pthread_mutex_destroy(&r->slots_lock);
    pthread_mutex_destroy(&r->status_lock);
    pthread_mutex_destroy(&r->repair_lock);
    pthread_rwlock_destroy(&r->handles_lock);
    pthread_rwlock_destroy(&r->labels_lock);
    json_decref(r->labels);
    pthread_mutex_destroy(&r->verdicts_lock);
    json_decref(r->verdicts);
    json_decref(r->refused);
    allowed_signers_free(r->signers);
    free(r->display_uri);
    free(r->url);
    free(r->mirror_path);
    free(r->root);
    free(r->default_label);
    free(r->fetch_program);
    free(r->policy.ca_file);
    free(r->policy.proxy);
    free(r->policy.known_hosts);
    free(r->policy.ssh_key);
    free(r);
}

const char *repo_display_uri(const repo *r)
{
    return r->display_uri;
}

const char *repo_mirror_path(const repo *r)
{
    return r->is_git && !r->in_place ? r->mirror_path : NULL;
}

bool repo_is_git(const repo *r)
{
    return r->is_git;
}

void repo_get_status(repo *r, repo_status *out)
{
    pthread_mutex_lock(&r->status_lock);
    *out = r->status;
    pthread_mutex_unlock(&r->status_lock);
}

/* ---- labels --------------------------------------------------------------------------------- */

/* Only names that could be a branch, tag or commit id; never a revparse expression. */
static bool label_ok(const char *label)
{
    size_t len = strlen(label);

    if (len == 0 || len > LABEL_MAX || label[0] == '-' || label[0] == '/' || strstr(label, "..") ||
        strstr(label, "@{"))
        return false;
    for (const char *p = label; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20 || c == 0x7f || strchr("~^:\\ ?*[", c))
            return false;
    }
    return true;
}

static bool is_hex(const char *s, size_t *len)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f') ||
              (s[n] >= 'A' && s[n] <= 'F')))
            return false;
    *len = n;
    return n > 0;
}

/* 0 with the commit id; 1 when the label names nothing here; <0 on a Git failure. */
static int lookup_label(git_repository *g, const char *label, git_oid *id)
{
    static const char *const prefixes[] = {"refs/heads/", "refs/tags/"};
    char refname[LABEL_MAX + 16];
    size_t hexlen;

    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
        git_reference *ref = NULL;
        git_object *obj = NULL;
        int error;

        snprintf(refname, sizeof(refname), "%s%s", prefixes[i], label);
        error = git_reference_lookup(&ref, g, refname);
        if (error == 0) {
            error = git_reference_peel(&obj, ref, GIT_OBJECT_COMMIT);
            if (error == 0)
                git_oid_cpy(id, git_object_id(obj));
            git_object_free(obj);
            git_reference_free(ref);
            if (error == 0)
                return 0;
            if (error == GIT_EPEEL || error == GIT_EINVALIDSPEC)
                return 1; /* a tag of a tree or blob is not a version */
            return err_set(ERR_GIT, "cannot read %s: %s", refname, git_reason());
        }
        if (error != GIT_ENOTFOUND && error != GIT_EINVALIDSPEC)
            return err_set(ERR_GIT, "cannot look up %s: %s", refname, git_reason());
    }

    if (is_hex(label, &hexlen) && hexlen >= 4 && hexlen <= GIT_OID_HEXSZ) {
        git_object *obj = NULL;
        git_oid prefix;
        int error;

        if (git_oid_fromstrn(&prefix, label, hexlen) < 0)
            return 1;
        error = git_object_lookup_prefix(&obj, g, &prefix, hexlen, GIT_OBJECT_COMMIT);
        if (error == 0) {
            git_oid_cpy(id, git_object_id(obj));
            git_object_free(obj);
            return 0;
        }
        if (error == GIT_EAMBIGUOUS) {
            err_set(ERR_NOT_FOUND, "label %s is an ambiguous commit id", label);
            return 2;
        }
        if (error != GIT_ENOTFOUND) /* includes "not a commit" */
            return err_set(ERR_GIT, "cannot look up %s: %s", label, git_reason());
    }
    return 1;
}

static bool cached_label(repo *r, const char *key, unsigned long gen,
                         char commit_out[REPO_COMMIT_HEX])
{
    bool hit = false;
    pthread_rwlock_rdlock(&r->labels_lock);
    if (r->labels_generation == gen) {
        const char *commit = json_string_value(json_object_get(r->labels, key));
        if (commit != NULL) {
            memcpy(commit_out, commit, REPO_COMMIT_HEX);
            hit = true;
        }
    }
    pthread_rwlock_unlock(&r->labels_lock);
    return hit;
}

static void remember_label(repo *r, const char *key, unsigned long gen, const char *commit)
{
    pthread_rwlock_wrlock(&r->labels_lock);
    if (r->labels_generation != gen || json_object_size(r->labels) >= LABEL_CACHE_MAX) {
        json_object_clear(r->labels);
        r->labels_generation = gen;
    }
    json_object_set_new(r->labels, key, json_string(commit));
    pthread_rwlock_unlock(&r->labels_lock);
}

static int resolve_uncached(repo *r, const char *label, char commit_out[REPO_COMMIT_HEX]);

static int resolve_label(repo *r, const char *label, char commit_out[REPO_COMMIT_HEX])
{
    commit_out[0] = '\0';
    if (!r->is_git)
        return 0;
    const char *key = label ? label : "";
    /* The generation is read first: a fetch during the lookup makes the entry stale at once. */
    unsigned long gen = atomic_load(&r->generation);
    if (r->labels != NULL && cached_label(r, key, gen, commit_out))
        return 0;
    int error = resolve_uncached(r, label, commit_out);
    if (error == 0 && r->labels != NULL)
        remember_label(r, key, gen, commit_out);
    return error;
}

static int resolve_revision(git_repository *g, const char *spec, char commit_out[REPO_COMMIT_HEX])
{
    git_object *obj = NULL, *commit = NULL;
    int error = 0;
    if (git_revparse_single(&obj, g, spec) < 0 || git_object_peel(&commit, obj, GIT_OBJECT_COMMIT) < 0)
        error = err_set(ERR_NOT_FOUND, "no commit %s: %s", spec, git_reason());
    else
        git_oid_tostr(commit_out, REPO_COMMIT_HEX, git_object_id(commit));
    git_object_free(commit);
    git_object_free(obj);
    return error;
}

static int served_commit_verified(repo *r, git_repository *g, const git_oid *id,
                                  const char *label);

static int resolve_uncached(repo *r, const char *label, char commit_out[REPO_COMMIT_HEX])
{
    git_repository *g = NULL;
    git_oid id;
    int found, error;

    if ((error = thread_git(r, &g)) < 0)
        return error;

    if (!label || !*label) {
        found = lookup_default(r, g, &id);
        if (found == 1 && git_reference_name_to_id(&id, g, PIN_REF) == 0)
            found = 0; /* the branch is gone: its last commit (see pin_default) */
        if (found < 0)
            return found;
        if (found == 2)
            return ERR_NOT_FOUND;
        if (found > 0)
            return r->default_label
                       ? err_set(ERR_NOT_FOUND, "no such label: %s", r->default_label)
                       : err_set(ERR_NOT_FOUND, "no default branch (main or master)");
        if ((error = served_commit_verified(r, g, &id, NULL)) < 0)
            return error;
        git_oid_tostr(commit_out, REPO_COMMIT_HEX, &id);
        return 0;
    }
    if (r->in_place) { /* the caller's own clone, read by the caller: HEAD~1, origin/main */
        if ((error = resolve_revision(g, label, commit_out)) < 0)
            return error;
        if (r->signers && git_oid_fromstr(&id, commit_out) == 0)
            return served_commit_verified(r, g, &id, label);
        return 0;
    }
    if (!label_ok(label))
        return err_set(ERR_NOT_FOUND, "no such label"); /* not echoed: it may hold anything */
    found = lookup_served(r, g, label, &id);
    if (found < 0)
        return found;
    if (found == 2)
        return ERR_NOT_FOUND;
    if (found == 1)
        return err_set(ERR_NOT_FOUND, "no such label: %s", label);
    if ((error = served_commit_verified(r, g, &id, label)) < 0)
        return error;
    git_oid_tostr(commit_out, REPO_COMMIT_HEX, &id);
    return 0;
}

/* ---- signed commits ------------------------------------------------------------------------- */

/*
 * Signed configuration only (--verify-commits). Every commit a label resolves to is checked
 * against the allowed signers (sshsig.c) before it is served, whatever the label: branch, tag,
 * commit id, the default branch's pin. A branch whose new tip does not verify keeps being
 * served at its last verified commit, recorded under VERIFIED_PREFIX after each fetch (outside
 * the fetch refspecs like PIN_REF, so pruning leaves it, and a ref, so a repack keeps its
 * objects); a branch that never had a verified tip, a tag or a commit id that does not verify
 * answers 403. Verdicts are cached by commit id: a commit's bytes never change, and its
 * committer time (the time valid-after/valid-before are checked at, as Git does) is part of
 * them.
 */
#define VERIFIED_PREFIX "refs/almanac/verified/"
#define VERDICTS_MAX 4096
#define SIGNER_MAX 256

/* 0 verified; ERR_FORBIDDEN with the bare reason ("not signed", "bad signature: ..."). */
static int verify_uncached(repo *r, git_repository *g, const git_oid *id, char *signer,
                           size_t signer_size)
{
    git_buf signature = GIT_BUF_INIT, signed_data = GIT_BUF_INIT;
    git_commit *commit = NULL;
    git_oid oid;
    int error;

    git_oid_cpy(&oid, id);
    /* the commit object without its gpgsig header: what `git commit -S` signed */
    error = git_commit_extract_signature(&signature, &signed_data, g, &oid, NULL);
    if (error == GIT_ENOTFOUND) {
        error = err_set(ERR_FORBIDDEN, "not signed");
        goto out;
    }
    if (error < 0 || git_commit_lookup(&commit, g, id) < 0) {
        error = err_set(ERR_GIT, "cannot read the commit: %s", git_reason());
        goto out;
    }
    error = sshsig_verify(r->signers, signature.ptr, signature.size, signed_data.ptr,
                          signed_data.size, "git",
                          (int64_t)git_commit_committer(commit)->when.time, signer, signer_size);
out:
    git_commit_free(commit);
    git_buf_dispose(&signature);
    git_buf_dispose(&signed_data);
    return error;
}

/* 0 with the signer, ERR_FORBIDDEN with the reason (err_message()), other <0 failures. */
static int verify_oid(repo *r, git_repository *g, const git_oid *id, char *signer,
                      size_t signer_size)
{
    char hex[GIT_OID_HEXSZ + 1], principal[SIGNER_MAX] = "";
    int error;

    if (!r->signers)
        return err_set(ERR_INTERNAL, "commits are not verified (no --verify-commits)");
    git_oid_tostr(hex, sizeof(hex), id);
    pthread_mutex_lock(&r->verdicts_lock);
    json_t *verdict = json_object_get(r->verdicts, hex);
    if (verdict != NULL) {
        bool ok = json_is_true(json_object_get(verdict, "ok"));
        const char *text = json_string_value(json_object_get(verdict, "text"));
        if (ok && signer && signer_size)
            snprintf(signer, signer_size, "%s", text ? text : "");
        error = ok ? 0 : err_set(ERR_FORBIDDEN, "%s", text ? text : "refused");
        pthread_mutex_unlock(&r->verdicts_lock);
        return error;
    }
    pthread_mutex_unlock(&r->verdicts_lock);

    error = verify_uncached(r, g, id, principal, sizeof(principal));
    if (error == 0 || error == ERR_FORBIDDEN) {
        metrics_commit_verification(error == 0);
        json_t *entry = json_pack("{s:b, s:s}", "ok", error == 0, "text",
                                  error == 0 ? principal : err_message());
        pthread_mutex_lock(&r->verdicts_lock);
        if (json_object_size(r->verdicts) >= VERDICTS_MAX)
            json_object_clear(r->verdicts);
        if (entry)
            json_object_set_new(r->verdicts, hex, entry);
        pthread_mutex_unlock(&r->verdicts_lock);
        if (error == ERR_FORBIDDEN)
            err_set(ERR_FORBIDDEN, "%s", json_string_value(json_object_get(entry, "text")));
    }
    if (error == 0 && signer && signer_size)
        snprintf(signer, signer_size, "%s", principal);
    return error;
}

int repo_verify_commit(repo *r, const char *commit, char *signer, size_t signer_size)
{
    git_repository *g = NULL;
    git_oid id;
    int error;

    if (signer && signer_size)
        signer[0] = '\0';
    if (!r->is_git || !r->signers)
        return err_set(ERR_INTERNAL, "commits are not verified here");
    if (git_oid_fromstr(&id, commit) < 0)
        return err_set(ERR_NOT_FOUND, "not a commit id: %.64s", commit);
    if ((error = thread_git(r, &g)) < 0)
        return error;
    return verify_oid(r, g, &id, signer, signer_size);
}

bool repo_verifies_commits(const repo *r)
{
    return r->signers != NULL;
}

/* The last check before a commit is served: 403 naming the commit and the label. */
static int served_commit_verified(repo *r, git_repository *g, const git_oid *id,
                                  const char *label)
{
    char hex[GIT_OID_HEXSZ + 1];
    int error;

    if (!r->signers || (error = verify_oid(r, g, id, NULL, 0)) == 0)
        return 0;
    if (error != ERR_FORBIDDEN)
        return error;
    git_oid_tostr(hex, sizeof(hex), id);
    if (label && strcmp(label, hex) != 0)
        return err_set(ERR_FORBIDDEN,
                       "label %s is commit %s, which is not verified (--verify-commits): %s",
                       label, hex, err_message());
    return err_set(ERR_FORBIDDEN, "commit %s is not verified (--verify-commits): %s", hex,
                   err_message());
}

/*
 * lookup_label, but a branch resolves to its last verified commit when commits are verified
 * (a repository read in place, by lint, checks exactly what it is asked).
 */
static int lookup_served(repo *r, git_repository *g, const char *label, git_oid *id)
{
    char refname[LABEL_MAX + sizeof(VERIFIED_PREFIX)];
    git_oid tip;
    int found = lookup_label(g, label, id);

    if (found != 0 || !r->signers || r->in_place)
        return found;
    snprintf(refname, sizeof(refname), "refs/heads/%s", label);
    if (git_reference_name_to_id(&tip, g, refname) < 0 || !git_oid_equal(&tip, id))
        return 0; /* a tag or a commit id: checked as it is */
    snprintf(refname, sizeof(refname), VERIFIED_PREFIX "%s", label);
    if (git_reference_name_to_id(id, g, refname) == 0)
        return 0;

    char reason[300] = "";
    pthread_mutex_lock(&r->status_lock);
    json_t *refusal = json_object_get(r->refused, label);
    if (refusal)
        snprintf(reason, sizeof(reason), ": its tip %.12s: %s",
                 json_string_value(json_object_get(refusal, "commit")),
                 json_string_value(json_object_get(refusal, "reason")));
    pthread_mutex_unlock(&r->status_lock);
    return err_set(ERR_FORBIDDEN, "branch %s has no verified commit (--verify-commits)%s", label,
                   reason);
}

static void record_refusal(repo *r, const char *branch, const git_oid *tip, const git_oid *serving,
                           const char *reason)
{
    char hex[GIT_OID_HEXSZ + 1], served[GIT_OID_HEXSZ + 1];
    git_oid_tostr(hex, sizeof(hex), tip);
    if (serving)
        git_oid_tostr(served, sizeof(served), serving);

    pthread_mutex_lock(&r->status_lock);
    json_t *old = json_object_get(r->refused, branch);
    bool news = !old || strcmp(json_string_value(json_object_get(old, "commit")), hex) != 0;
    json_t *entry = json_pack("{s:s, s:s, s:s, s:o}", "branch", branch, "commit", hex, "reason",
                              reason, "serving", serving ? json_string(served) : json_null());
    if (entry)
        json_object_set_new(r->refused, branch, entry);
    pthread_mutex_unlock(&r->status_lock);
    if (!news)
        return;
    if (serving)
        LOG_WARN(MODULE, "branch %s: commit %s refused (%s); still serving %s", branch, hex,
                 reason, served);
    else
        LOG_WARN(MODULE, "branch %s: commit %s refused (%s); the branch has no verified commit "
                         "and answers 403", branch, hex, reason);
}

static void clear_refusal(repo *r, const char *branch)
{
    pthread_mutex_lock(&r->status_lock);
    json_object_del(r->refused, branch);
    pthread_mutex_unlock(&r->status_lock);
}

/* Each branch's tip: verified, it becomes what the branch serves; refused, it is recorded. */
static void verify_heads(repo *r, git_repository *g)
{
    git_reference_iterator *it = NULL;
    git_reference *ref = NULL;

    if (git_reference_iterator_glob_new(&it, g, "refs/heads/*") < 0) {
        LOG_WARN(MODULE, "cannot list branches to verify: %s", git_reason());
        return;
    }
    while (git_reference_next(&ref, it) == 0) {
        const char *branch = git_reference_name(ref) + strlen("refs/heads/");
        char refname[LABEL_MAX + sizeof(VERIFIED_PREFIX)], signer[SIGNER_MAX];
        git_reference *pin = NULL;
        git_oid verified;
        const git_oid *tip = git_reference_type(ref) == GIT_REFERENCE_DIRECT
                                 ? git_reference_target(ref)
                                 : NULL;
        bool have_verified;

        if (!tip || strlen(branch) > LABEL_MAX) {
            git_reference_free(ref);
            continue;
        }
        snprintf(refname, sizeof(refname), VERIFIED_PREFIX "%s", branch);
        have_verified = git_reference_name_to_id(&verified, g, refname) == 0;
        /* recorded by an earlier run, perhaps with another file: a withdrawn key's commit must
         * not be served */
        if (have_verified && verify_oid(r, g, &verified, NULL, 0) < 0) {
            LOG_WARN(MODULE, "branch %s: its last verified commit no longer verifies (%s); "
                             "forgetting it", branch, err_message());
            if (git_reference_lookup(&pin, g, refname) == 0 && git_reference_delete(pin) < 0)
                LOG_WARN(MODULE, "cannot delete %s: %s", refname, git_reason());
            git_reference_free(pin);
            pin = NULL;
            have_verified = false;
        }
        if (have_verified && git_oid_equal(&verified, tip)) {
            clear_refusal(r, branch);
        } else if (verify_oid(r, g, tip, signer, sizeof(signer)) == 0) {
            char hex[GIT_OID_HEXSZ + 1];
            if (git_reference_create(&pin, g, refname, tip, 1, "almanac: verified") < 0)
                LOG_WARN(MODULE, "cannot record the verified commit of %s: %s", branch,
                         git_reason());
            git_reference_free(pin);
            clear_refusal(r, branch);
            LOG_INFO(MODULE, "branch %s: commit %s verified, signed by %s", branch,
                     git_oid_tostr(hex, sizeof(hex), tip), signer);
        } else {
            record_refusal(r, branch, tip, have_verified ? &verified : NULL, err_message());
        }
        git_reference_free(ref);
    }
    git_reference_iterator_free(it);
}

/* A branch that is gone takes its verified commit with it: a new branch of the same name must
 * earn its own. */
static void drop_gone_branches(repo *r, git_repository *g)
{
    git_reference_iterator *it = NULL;
    git_reference *ref = NULL;
    const char *key;
    json_t *value;
    void *tmp;

    if (git_reference_iterator_glob_new(&it, g, VERIFIED_PREFIX "*") == 0) {
        while (git_reference_next(&ref, it) == 0) {
            const char *branch = git_reference_name(ref) + strlen(VERIFIED_PREFIX);
            char refname[LABEL_MAX + 16];
            git_oid tip;
            snprintf(refname, sizeof(refname), "refs/heads/%s", branch);
            if (strlen(branch) <= LABEL_MAX && git_reference_name_to_id(&tip, g, refname) ==
                                                   GIT_ENOTFOUND) {
                LOG_INFO(MODULE, "branch %s is gone: forgetting its verified commit", branch);
                if (git_reference_delete(ref) < 0)
                    LOG_WARN(MODULE, "cannot delete %s: %s", git_reference_name(ref),
                             git_reason());
            }
            git_reference_free(ref);
        }
        git_reference_iterator_free(it);
    }
    pthread_mutex_lock(&r->status_lock);
    json_object_foreach_safe(r->refused, tmp, key, value) {
        char refname[LABEL_MAX + 16];
        git_oid tip;
        snprintf(refname, sizeof(refname), "refs/heads/%s", key);
        if (git_reference_name_to_id(&tip, g, refname) == GIT_ENOTFOUND)
            json_object_del(r->refused, key);
    }
    pthread_mutex_unlock(&r->status_lock);
}

/* A re-clone (repair_mirror) must not forget what each branch last served: the verified refs
 * are read before the damaged mirror goes (what can still be read of them) ... */
static json_t *verified_commits_save(repo *r, git_repository *g)
{
    git_reference_iterator *it = NULL;
    git_reference *ref = NULL;
    json_t *saved;
    char hex[GIT_OID_HEXSZ + 1];

    if (!r->signers || !g || !(saved = json_object()))
        return NULL;
    if (git_reference_iterator_glob_new(&it, g, VERIFIED_PREFIX "*") == 0) {
        while (git_reference_next(&ref, it) == 0) {
            if (git_reference_type(ref) == GIT_REFERENCE_DIRECT) {
                git_oid_tostr(hex, sizeof(hex), git_reference_target(ref));
                json_object_set_new(saved, git_reference_name(ref), json_string(hex));
            }
            git_reference_free(ref);
        }
        git_reference_iterator_free(it);
    }
    return saved;
}

/* ... and written into the new clone where it has their commits (each is checked again before
 * it is served). */
static void verified_commits_restore(git_repository *g, json_t *saved)
{
    const char *name;
    json_t *value;
    git_odb *odb = NULL;

    if (!saved || git_repository_odb(&odb, g) < 0)
        return;
    json_object_foreach(saved, name, value) {
        git_oid id;
        git_reference *ref = NULL;
        if (git_oid_fromstr(&id, json_string_value(value)) == 0 && git_odb_exists(odb, &id) &&
            git_reference_create(&ref, g, name, &id, 1, "almanac: re-clone") < 0)
            LOG_WARN(MODULE, "cannot record %s again: %s", name, git_reason());
        git_reference_free(ref);
    }
    git_odb_free(odb);
}

/* Called under fetch_lock (or at open) after every fetch, before pin_default. */
static void verify_branch_tips(repo *r, git_repository *g)
{
    if (!r->signers || !g)
        return;
    verify_heads(r, g);
    drop_gone_branches(r, g);
}

json_t *repo_refused_commits(repo *r)
{
    json_t *list = json_array();
    const char *key;
    json_t *value;

    if (!list || !r->refused)
        return list;
    pthread_mutex_lock(&r->status_lock);
    json_object_foreach(r->refused, key, value) {
        json_array_append_new(list, json_deep_copy(value));
    }
    pthread_mutex_unlock(&r->status_lock);
    return list;
}

/* ---- reading: shared checks ----------------------------------------------------------------- */

/* Relative, '/'-separated, no empty, "." or ".." segment, no backslash. */
static bool path_ok(const char *path)
{
    const char *seg = path;
    size_t len = strlen(path);

    if (len == 0 || len > REPO_PATH_MAX || path[0] == '/' || strchr(path, '\\'))
        return false;
    for (const char *p = path; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return false;
    for (;;) {
        size_t n = strcspn(seg, "/");
        if (n == 0 || (n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.'))
            return false;
        if (!seg[n])
            return true;
        seg += n + 1;
    }
}

static int commit_tree(git_repository *g, const char *commit, git_tree **tree)
{
    git_commit *c = NULL;
    git_oid id;
    size_t hexlen;
    int error;

    if (!commit || !is_hex(commit, &hexlen) || hexlen != GIT_OID_HEXSZ ||
        git_oid_fromstr(&id, commit) < 0)
        return err_set(ERR_NOT_FOUND, "no such commit"); /* not echoed: may hold anything */
    if ((error = git_commit_lookup(&c, g, &id)) < 0) {
        if (error == GIT_ENOTFOUND)
            return err_set(ERR_NOT_FOUND, "no such commit: %s", commit);
        return err_set(ERR_GIT, "cannot read commit %s: %s", commit, git_reason());
    }
    error = git_commit_tree(tree, c);
    git_commit_free(c);
    if (error < 0)
        return err_set(ERR_GIT, "cannot read the tree of %s: %s", commit, git_reason());
    return 0;
}

static int copy_out(const void *src, size_t len, char **data)
{
    char *p = malloc(len + 1);
    if (!p)
        return err_set(ERR_NOMEM, "out of memory");
    if (len)
        memcpy(p, src, len);
    p[len] = '\0';
    *data = p;
    return 0;
}

static int first_parent(repo *r, const char *commit, char parent_out[REPO_COMMIT_HEX])
{
    git_repository *g = NULL;
    git_commit *c = NULL;
    git_oid id;
    size_t hexlen;
    int error;

    parent_out[0] = '\0';
    if (!r->is_git)
        return err_set(ERR_NOT_FOUND, "a directory has no history");
    if (!commit || !is_hex(commit, &hexlen) || hexlen != GIT_OID_HEXSZ ||
        git_oid_fromstr(&id, commit) < 0)
        return err_set(ERR_NOT_FOUND, "no such commit");
    if ((error = thread_git(r, &g)) < 0)
        return error;
    if ((error = git_commit_lookup(&c, g, &id)) < 0)
        return error == GIT_ENOTFOUND ? err_set(ERR_NOT_FOUND, "no such commit: %s", commit)
                                      : err_set(ERR_GIT, "cannot read commit %s: %s", commit,
                                                git_reason());
    if (git_commit_parentcount(c) == 0)
        error = err_set(ERR_NOT_FOUND, "%s has no parent", commit);
    else
        git_oid_tostr(parent_out, REPO_COMMIT_HEX, git_commit_parent_id(c, 0));
    git_commit_free(c);
    return error;
}

/* ---- walking -------------------------------------------------------------------------------- */

typedef struct walk_ctx {
    repo *r;
    git_repository *g;
    repo_filter_fn filter;
    repo_file_fn fn;
    void *payload;
    char path[REPO_PATH_MAX + 1];
} walk_ctx;

static int walk_blob(walk_ctx *w, const git_tree_entry *e)
{
    git_blob *blob = NULL;
    char *copy = NULL;
    size_t size;
    int error;

    if (git_blob_lookup(&blob, w->g, git_tree_entry_id(e)) < 0)
        return err_set(ERR_GIT, "cannot read %s: %s", w->path, git_reason());
    size = (size_t)git_blob_rawsize(blob);
    if (size > w->r->max_file_bytes) {
        error = w->fn(w->path, NULL, size, w->payload);
    } else if ((error = copy_out(git_blob_rawcontent(blob), size, &copy)) == 0) {
        error = w->fn(w->path, copy, size, w->payload);
    }
    free(copy);
    git_blob_free(blob);
    return error;
}

static int walk_tree(walk_ctx *w, const git_tree *tree, size_t len, int depth)
{
    size_t count = git_tree_entrycount(tree);
    int error = 0;

    if (depth > REPO_DEPTH_MAX) {
        LOG_WARN(MODULE, "not walking below %s: nested too deep", w->path);
        return 0;
    }
    for (size_t i = 0; i < count && error == 0; i++) {
        const git_tree_entry *e = git_tree_entry_byindex(tree, i);
        git_filemode_t mode = git_tree_entry_filemode(e);
        size_t newlen;

        if (!repo_path_append(w->path, len, git_tree_entry_name(e), &newlen))
            continue;
        if (mode == GIT_FILEMODE_TREE) {
            git_tree *sub = NULL;
            if (git_tree_lookup(&sub, w->g, git_tree_entry_id(e)) < 0)
                error = err_set(ERR_GIT, "cannot read %s: %s", w->path, git_reason());
            else
                error = walk_tree(w, sub, newlen, depth + 1);
            git_tree_free(sub);
        } else if ((mode == GIT_FILEMODE_BLOB || mode == GIT_FILEMODE_BLOB_EXECUTABLE) &&
                   (!w->filter || w->filter(w->path, w->payload))) {
            error = walk_blob(w, e);
        }
        /* symlinks and submodules are not configuration: skipped */
        w->path[len] = '\0';
    }
    return error;
}

static int walk_commit(repo *r, const char *commit, repo_filter_fn filter, repo_file_fn fn,
                       void *payload)
{
    walk_ctx *w = NULL;
    git_tree *tree = NULL;
    int error;

    if (!r->is_git)
        return repo_dir_walk(r->root, r->max_file_bytes, filter, fn, payload);
    if (!(w = calloc(1, sizeof(*w))))
        return err_set(ERR_NOMEM, "out of memory");
    w->r = r;
    w->filter = filter;
    w->fn = fn;
    w->payload = payload;
    if ((error = thread_git(r, &w->g)) < 0 || (error = commit_tree(w->g, commit, &tree)) < 0)
        goto out;
    error = walk_tree(w, tree, 0, 0);
out:
    git_tree_free(tree);
    free(w);
    return error;
}

/* ---- what changed between two commits ------------------------------------------------------- */

typedef struct changed_ctx {
    json_t *paths;
    size_t max;
    size_t added;
    bool truncated;
} changed_ctx;

static int add_changed(changed_ctx *c, const char *path)
{
    if (path == NULL)
        return 0;
    if (c->added == c->max) {
        c->truncated = true;
        return 1; /* stops the walk */
    }
    if (json_array_append_new(c->paths, json_string(path)) != 0)
        return -1;
    c->added++;
    return 0;
}

static int on_changed_file(const git_diff_delta *delta, float progress, void *payload)
{
    (void)progress;
    changed_ctx *c = payload;
    int rc = add_changed(c, delta->new_file.path);
    if (rc == 0 && delta->old_file.path != NULL &&
        (delta->new_file.path == NULL || strcmp(delta->old_file.path, delta->new_file.path) != 0))
        rc = add_changed(c, delta->old_file.path);
    return rc;
}

static int changed_paths(repo *r, const char *from, const char *to, json_t *paths, size_t max)
{
    git_repository *g = NULL;
    git_tree *old_tree = NULL, *new_tree = NULL;
    git_diff *diff = NULL;
    changed_ctx c = {.paths = paths, .max = max};
    int error;

    if (!r->is_git)
        return 0;
    if ((error = thread_git(r, &g)) < 0 || (from[0] && (error = commit_tree(g, from, &old_tree)) < 0) ||
        (error = commit_tree(g, to, &new_tree)) < 0)
        goto out;
    if (git_diff_tree_to_tree(&diff, g, old_tree, new_tree, NULL) < 0) {
        error = err_set(ERR_GIT, "cannot compare %s and %s: %s", from, to, git_reason());
        goto out;
    }
    error = git_diff_foreach(diff, on_changed_file, NULL, NULL, NULL, &c);
    if (error < 0 && !c.truncated)
        error = err_set(ERR_NOMEM, "out of memory listing changed files");
    else
        error = c.truncated ? 1 : 0;
out:
    git_diff_free(diff);
    git_tree_free(old_tree);
    git_tree_free(new_tree);
    return error;
}

/* ---- reading one file ----------------------------------------------------------------------- */

static int read_file(repo *r, const char *commit, const char *path, char **data, size_t *len)
{
    git_repository *g = NULL;
    git_tree *tree = NULL;
    git_tree_entry *entry = NULL;
    git_blob *blob = NULL;
    git_odb *odb = NULL;
    git_object_t type;
    size_t size, header_size = 0;
    int error;
    git_filemode_t mode;

    *data = NULL;
    *len = 0;
    if (!path || !path_ok(path))
        return err_set(ERR_NOT_FOUND, "no such file"); /* not echoed: it may hold anything */
    if (!r->is_git)
        return repo_dir_read(r->root, r->max_file_bytes, path, data, len);

    if ((error = thread_git(r, &g)) < 0 || (error = commit_tree(g, commit, &tree)) < 0)
        goto out;
    if ((error = git_tree_entry_bypath(&entry, tree, path)) < 0) {
        error = error == GIT_ENOTFOUND
                    ? err_set(ERR_NOT_FOUND, "no such file: %s", path)
                    : err_set(ERR_GIT, "cannot look up %s: %s", path, git_reason());
        goto out;
    }
    mode = git_tree_entry_filemode(entry);
    if (mode != GIT_FILEMODE_BLOB && mode != GIT_FILEMODE_BLOB_EXECUTABLE) {
        error = err_set(ERR_NOT_FOUND, "no such file: %s", path); /* tree, symlink, submodule */
        goto out;
    }
    /* The size from the object's header first: a blob over the cap is never inflated (eight
     * requests for a 50 MB file used to stall other reads for a second). A file too large to
     * serve is the repository's problem, not the request's: 500, as every broken file. */
    if (git_repository_odb(&odb, g) < 0 ||
        git_odb_read_header(&header_size, &type, odb, git_tree_entry_id(entry)) < 0) {
        error = err_set(ERR_GIT, "cannot read %s: %s", path, git_reason());
        goto out;
    }
    if (header_size > r->max_file_bytes) {
        error = err_set(ERR_CONFIG, "%s is larger than %zu bytes", path, r->max_file_bytes);
        goto out;
    }
    if (git_blob_lookup(&blob, g, git_tree_entry_id(entry)) < 0) {
        error = err_set(ERR_GIT, "cannot read %s: %s", path, git_reason());
        goto out;
    }
    size = (size_t)git_blob_rawsize(blob);
    if ((error = copy_out(git_blob_rawcontent(blob), size, data)) == 0)
        *len = size;
out:
    git_odb_free(odb);
    git_blob_free(blob);
    git_tree_entry_free(entry);
    git_tree_free(tree);
    return error;
}

static int log_commits(repo *r, const char *commit, size_t max, repo_log_fn fn, void *payload)
{
    git_repository *g = NULL;
    git_revwalk *walk = NULL;
    git_oid id;
    int error = 0;

    if (!r->is_git || max == 0)
        return 0;
    if ((error = thread_git(r, &g)) < 0)
        return error;
    if (git_oid_fromstr(&id, commit) < 0)
        return err_set(ERR_NOT_FOUND, "not a commit id");
    if (git_revwalk_new(&walk, g) < 0 || git_revwalk_push(walk, &id) < 0) {
        error = err_set(ERR_GIT, "cannot walk the history of %s: %s", r->display_uri,
                        git_reason());
        goto out;
    }
    git_revwalk_simplify_first_parent(walk);
    for (size_t n = 0; n < max && error == 0 && git_revwalk_next(&id, walk) == 0; n++) {
        git_commit *c = NULL;
        if (git_commit_lookup(&c, g, &id) < 0) {
            error = err_set(ERR_GIT, "cannot read a commit of %s: %s", r->display_uri,
                            git_reason());
            break;
        }
        const git_signature *author = git_commit_author(c);
        repo_commit_info info = {
            .time = (int64_t)git_commit_time(c),
            .summary = git_commit_summary(c) ? git_commit_summary(c) : "",
            .author = author && author->name ? author->name : "",
        };
        git_oid_tostr(info.id, sizeof(info.id), &id);
        error = fn(&info, payload);
        git_commit_free(c);
    }
out:
    git_revwalk_free(walk);
    return error;
}

/* ---- the public read calls: each holds the handles lock for reading ------------------------- */

static void reading(repo *r)
{
    pthread_rwlock_rdlock(&r->handles_lock);
}

/* A Git error may mean a damaged mirror: a check starts in the background (suspect_damage). */
static int done_reading(repo *r, int error)
{
    pthread_rwlock_unlock(&r->handles_lock);
    if (error == ERR_GIT)
        suspect_damage(r);
    return error;
}

int repo_resolve(repo *r, const char *label, char commit_out[REPO_COMMIT_HEX])
{
    reading(r);
    return done_reading(r, resolve_label(r, label, commit_out));
}

int repo_first_parent(repo *r, const char *commit, char parent_out[REPO_COMMIT_HEX])
{
    reading(r);
    return done_reading(r, first_parent(r, commit, parent_out));
}

int repo_walk(repo *r, const char *commit, repo_filter_fn filter, repo_file_fn fn, void *payload)
{
    reading(r);
    return done_reading(r, walk_commit(r, commit, filter, fn, payload));
}

int repo_changed_paths(repo *r, const char *from, const char *to, json_t *paths, size_t max)
{
    reading(r);
    return done_reading(r, changed_paths(r, from, to, paths, max));
}

int repo_read_file(repo *r, const char *commit, const char *path, char **data, size_t *len)
{
    reading(r);
    return done_reading(r, read_file(r, commit, path, data, len));
}

int repo_log(repo *r, const char *commit, size_t max, repo_log_fn fn, void *payload)
{
    reading(r);
    return done_reading(r, log_commits(r, commit, max, fn, payload));
}
