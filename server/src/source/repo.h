/*
 * repo — where configuration comes from: a bare Git mirror of the remote kept under the cache
 * directory (libgit2; the only module that includes <git2.h>), or a plain directory (dir:PATH,
 * Spring's "native" mode).
 *
 * Files are read straight from Git objects (label -> commit -> tree -> blob); there is no
 * working tree, so requests for different labels never race. All functions are safe to call
 * from several threads at once: each thread uses its own git_repository handle, and fetches are
 * serialised against each other (not against readers).
 */
#ifndef ALMANAC_REPO_H
#define ALMANAC_REPO_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define REPO_COMMIT_HEX 41 /* 40 hex digits and a NUL */

typedef struct repo repo;

/*
 * How a fetch reaches one repository's remote and whom it trusts there (the fetch process is
 * given the same). Any field may be NULL; the strings are copied by repo_open.
 */
typedef struct repo_transport {
    const char *ca_file;     /* PEM certificates trusted for https:// besides the system's */
    const char *proxy;       /* proxy URL for http(s):// remotes; NULL: https_proxy, http_proxy,
                              * all_proxy from the environment. no_proxy applies to both. */
    const char *known_hosts; /* OpenSSH known_hosts for ssh:// remotes; NULL:
                              * $HOME/.ssh/known_hosts */
    const char *ssh_key;     /* private key (no passphrase) for ssh://; NULL: the environment's
                              * ALMANAC_GIT_SSH_KEY_FILE, else ssh-agent */
} repo_transport;

typedef struct repo_options {
    const char *uri;           /* https://, ssh://, file://, a plain path, or dir:PATH */
    const char *cache_dir;     /* the mirror lives in a subdirectory named after the URI */
    const char *default_label; /* NULL: "main", falling back to "master" */
    size_t max_file_bytes;     /* files larger than this are refused by repo_read_file/walk */
    bool in_place;             /* uri is a local Git directory (".git" or bare) read as it is:
                                * no mirror, never fetched (offline tools: `almanac diff`) */
    unsigned git_timeout;      /* seconds a fetch may take, connecting included; 0: 60 */
    /*
     * The program that runs fetches in a worker process (started as `PROGRAM git-fetch --serve`,
     * see repo_fetch_child_main, and reused across fetches and repositories), killed when a
     * fetch outlives git_timeout. NULL: fetch in this process, unbounded (libgit2 1.5 has no
     * network timeout); only for tests of local remotes.
     */
    const char *fetch_program;
    bool allow_insecure_http;  /* send ALMANAC_GIT_PASSWORD_FILE over plain http:// */
    repo_transport transport;
    /*
     * Signed configuration only (--verify-commits): an allowed signers file. Every commit
     * served must carry an SSH signature by one of its keys (common/src/sshsig.h); a branch
     * whose tip does not verify is served at its last verified commit. NULL: no checks.
     */
    const char *allowed_signers_file;
} repo_options;

typedef struct repo_status {
    bool is_git;
    bool degraded;              /* the last fetch failed: serving what the mirror has */
    time_t last_fetch_ok;       /* 0: never */
    time_t last_fetch_attempt;  /* 0: never */
    bool timed_out;             /* the last fetch was abandoned after git_timeout */
    char last_error[256];       /* "" when the last fetch succeeded */
    char default_label[256];    /* the label that "no label" resolves to */
    /* The default branch is gone from the remote (deleted or renamed): "no label" resolves to
     * the last commit it had, and this says what happened. "" while the branch exists. */
    char default_gone[256];
    /* The mirror is damaged (a pack, an index or a ref; see mirror_check.h): what was found and
     * whether it is being cloned again or cloning failed. "" while the mirror is sound. */
    char mirror_damaged[320];
    /* The last repack of the mirror's packs failed (a full disk): why, and when it is tried
     * again. "" when it worked or was not needed. */
    char repack_error[320];
} repo_status;

/*
 * Opens the source. For Git: clones a bare mirror on first use or fetches into the existing one.
 * If the remote cannot be reached but a mirror exists, it succeeds in degraded mode (logged,
 * visible in repo_get_status). With neither, it fails with a message saying so.
 */
int repo_open(repo **out, const repo_options *opts);
void repo_free(repo *r);

/*
 * Fetches from the remote. 0 and *changed=true when a ref moved. Failure keeps the old refs.
 * A fetch that outlives git_timeout is abandoned (ERR_UNAVAILABLE, "fetch timed out ...").
 */
int repo_fetch(repo *r, bool *changed);

/* From any thread or a signal-handling thread, never blocking: every clone or fetch running
 * (its worker process is killed) or started from now on fails at once (the process is stopping). */
void repo_cancel_fetches(void);

/*
 * The fetch worker: `git-fetch --serve --parent PID`, started by the server only. Reads fetch
 * orders (one line of JSON each: git_dir, url, timeout, allow_insecure_http and the transport's
 * ca_file, proxy, known_hosts, ssh_key) from descriptor 0, a Unix socket, and answers each on it
 * with one line ("ok 0", "ok 1" when refs moved, or "error MESSAGE"). Returns the process exit
 * status once the server closes its end.
 */
int repo_fetch_child_main(int argc, char **argv);

/*
 * label (NULL or "" = default label; "(_)" already replaced by "/") -> full commit id.
 * Branch, tag (peeled to its commit), full or abbreviated commit id. ERR_NOT_FOUND otherwise.
 * In dir mode, any label resolves to "" (no version), as Spring's native mode.
 */
int repo_resolve(repo *r, const char *label, char commit_out[REPO_COMMIT_HEX]);

/* The first parent of commit (a full id). ERR_NOT_FOUND for a root commit or an unknown one;
 * ERR_NOT_FOUND in dir mode too (a directory has no history). */
int repo_first_parent(repo *r, const char *commit, char parent_out[REPO_COMMIT_HEX]);

/* Called for each file the filter accepts, in path order ("sub/dir/file.yml", no leading /). */
typedef bool (*repo_filter_fn)(const char *path, void *payload);
typedef int (*repo_file_fn)(const char *path, const char *data, size_t len, void *payload);
/* Walks every blob of commit (or of the directory in dir mode). A callback's non-zero return
 * stops the walk and is returned. Files above max_file_bytes are passed with data NULL. */
int repo_walk(repo *r, const char *commit, repo_filter_fn filter, repo_file_fn fn, void *payload);

/* Reads one file at commit. ERR_NOT_FOUND if absent or a directory; *data is NUL-terminated. */
int repo_read_file(repo *r, const char *commit, const char *path, char **data, size_t *len);

/*
 * Appends to paths (a JSON array) every path whose blob differs between the commits from and
 * to (added, modified, deleted; both names of a rename), in path order, at most max of them;
 * from "" means an empty tree. Returns 1 when there were more than max, 0 otherwise. Git only:
 * in dir mode appends nothing and returns 0.
 */
int repo_changed_paths(repo *r, const char *from, const char *to, json_t *paths, size_t max);

/* One commit of the history, newest first (repo_log). */
typedef struct repo_commit_info {
    char id[REPO_COMMIT_HEX];
    int64_t time;        /* committer time, seconds since the Epoch */
    const char *summary; /* first line of the message; valid during the callback */
    const char *author;  /* author name; valid during the callback */
} repo_commit_info;
typedef int (*repo_log_fn)(const repo_commit_info *info, void *payload);
/*
 * Walks the first-parent history from commit (a full id), newest first, at most max commits.
 * A callback's non-zero return stops the walk and is returned. ERR_GIT; nothing in dir mode.
 */
int repo_log(repo *r, const char *commit, size_t max, repo_log_fn fn, void *payload);

/*
 * Signed configuration only (repo_options.allowed_signers_file). 0 when commit (a full id)
 * carries a good SSH signature by an allowed signer, whose principals go into signer (may be
 * NULL); ERR_FORBIDDEN saying why not; ERR_INTERNAL when the repository verifies nothing.
 * Verdicts are remembered per commit.
 */
int repo_verify_commit(repo *r, const char *commit, char *signer, size_t signer_size);
bool repo_verifies_commits(const repo *r);
/*
 * Branches whose tip was refused, as a new JSON array of {"branch", "commit", "reason",
 * "serving"} ("serving": the branch's last verified commit, or null when it never had one);
 * empty when none is or verification is off. NULL on OOM.
 */
json_t *repo_refused_commits(repo *r);

/* The URI as shown in property source names ("file:///srv/config", "https://..."). */
const char *repo_display_uri(const repo *r);
bool repo_is_git(const repo *r);
/* The bare mirror's folder under the cache directory; NULL in dir mode and in place. */
const char *repo_mirror_path(const repo *r);
void repo_get_status(repo *r, repo_status *out);

#endif
