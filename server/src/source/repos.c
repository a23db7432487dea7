/*
 * repos — the default repository and those of the repos: section (see repos.h).
 *
 * Configured repositories live as long as the set. Template mirrors come and go: each is
 * reference-counted, a request holds the one it reads from, and the refresher holds those it
 * fetches, so an evicted mirror is freed (and its folder removed) by whoever lets go of it last.
 * A mirror being cloned is marked, so that concurrent requests for it wait for that one clone
 * instead of starting their own.
 */
#include "source/repos.h"

#include "errors.h"
#include "log.h"
#include "springconf.h"

#include <ctype.h>
#include <errno.h>
#include <ftw.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define MODULE "repos"
#define MISSES_MAX 4096 /* failed clones remembered at once */

typedef struct member {
    repo_source pub;
    char *name, *uri, *key; /* key: a mirror's expanded uri */
    struct member *tmpl;    /* a mirror's template; NULL otherwise */
    unsigned refs;          /* mirrors: holders (the set's list counts as one) */
    bool evicted;           /* mirrors: out of the list; freed with the last holder */
    unsigned long last_used;
    struct member *next;    /* mirrors: the set's list */
    bool borrowed;          /* repo and search paths belong to the caller (repo_set_single) */
} member;

struct repo_set {
    repo_options base;
    member **configured;
    size_t count;
    const repo_specs *specs;
    member *empty; /* the stand-in for template mirrors that do not exist */
    pthread_mutex_t lock;
    pthread_cond_t cloned;
    member *mirrors;
    size_t nmirrors;
    json_t *cloning; /* key -> true while a request clones it */
    json_t *misses;  /* key -> time (seconds, monotonic) until which it is not retried */
    unsigned max_mirrors, miss_seconds;
    unsigned long tick;
};

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    if (remove(path) < 0 && errno != ENOENT)
        LOG_WARN(MODULE, "cannot remove %s: %s", path, strerror(errno));
    return 0;
}

static void member_free(member *m, bool remove_mirror)
{
    if (m == NULL)
        return;
    if (m->borrowed) {
        m->pub.repo = NULL;
        m->pub.search_paths = NULL;
    }
    char *folder = NULL;
    if (remove_mirror && m->pub.repo != NULL && repo_mirror_path(m->pub.repo) != NULL)
        folder = strdup(repo_mirror_path(m->pub.repo));
    repo_free(m->pub.repo);
    if (folder != NULL) {
        /* The disk goes with the mirror: an evicted template mirror is cloned again on use. */
        nftw(folder, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
        LOG_INFO(MODULE, "removed the mirror %s of %s", folder, m->uri);
        free(folder);
    }
    if (m->tmpl == NULL) /* a mirror borrows its template's search paths */
        springconf_search_paths_free(m->pub.search_paths);
    pthread_mutex_destroy(&m->pub.refresh_lock);
    free(m->name);
    free(m->uri);
    free(m->key);
    free(m);
}

static member *member_new(const char *name, const char *uri)
{
    member *m = calloc(1, sizeof(*m));
    if (m == NULL || (m->name = strdup(name)) == NULL || (m->uri = strdup(uri)) == NULL) {
        if (m != NULL) {
            free(m->name);
            free(m);
        }
        return NULL;
    }
    pthread_mutex_init(&m->pub.refresh_lock, NULL);
    m->pub.name = m->name;
    m->pub.uri = m->uri;
    return m;
}

static unsigned long now_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (unsigned long)t.tv_sec;
}

/* The default repository's options with what an entry of repos: sets for itself. */
static repo_options options_for(const repo_set *s, const repo_spec *spec)
{
    repo_options ro = s->base;
    if (spec == NULL)
        return ro;
    if (spec->default_label != NULL)
        ro.default_label = spec->default_label;
    if (spec->git_ca_file != NULL)
        ro.transport.ca_file = spec->git_ca_file;
    if (spec->git_proxy != NULL)
        ro.transport.proxy = spec->git_proxy;
    if (spec->git_known_hosts != NULL)
        ro.transport.known_hosts = spec->git_known_hosts;
    if (spec->git_ssh_key_file != NULL)
        ro.transport.ssh_key = spec->git_ssh_key_file;
    return ro;
}

int repo_set_open(repo_set **out, const repo_set_options *o)
{
    repo_set *s = calloc(1, sizeof(*s));
    size_t nspecs = o->specs ? o->specs->count : 0;
    int error;
    *out = NULL;
    if (s == NULL || (s->configured = calloc(nspecs + 1, sizeof(*s->configured))) == NULL ||
        (s->cloning = json_object()) == NULL || (s->misses = json_object()) == NULL) {
        if (s != NULL) {
            free(s->configured);
            json_decref(s->cloning);
            free(s);
        }
        return err_set(ERR_NOMEM, "out of memory");
    }
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cloned, NULL);
    s->base = *o->base;
    s->specs = o->specs;
    s->max_mirrors = o->max_mirrors ? o->max_mirrors : 1;
    s->miss_seconds = o->miss_seconds;

    for (size_t i = 0; i <= nspecs; i++) {
        const repo_spec *spec = i > 0 ? &o->specs->items[i - 1] : NULL;
        member *m = member_new(spec ? spec->name : "", spec ? spec->uri : o->base->uri);
        if (m == NULL) {
            error = err_set(ERR_NOMEM, "out of memory");
            goto fail;
        }
        s->configured[s->count++] = m;
        m->pub.search_paths = springconf_search_paths(spec && spec->search_paths ? spec->search_paths
                                                                            : o->search_paths);
        m->pub.refresh_interval = spec && spec->refresh_interval >= 0
                                      ? (unsigned)spec->refresh_interval
                                      : o->refresh_interval;
        if (m->pub.search_paths == NULL) {
            error = err_set(ERR_NOMEM, "out of memory");
            goto fail;
        }
        if (spec != NULL && strncmp(spec->uri, "dir:", 4) == 0) {
            error = err_set(ERR_BAD_REQUEST,
                            "repos.%s: a plain directory (dir:) cannot be one of several "
                            "repositories; give a Git URI",
                            spec->name);
            goto fail;
        }
        if (spec != NULL && reposet_is_template(spec->uri)) {
            m->pub.is_template = true;
            LOG_INFO(MODULE, "repository %s: %s, one mirror per expansion, cloned on first use",
                     spec->name, spec->uri);
            continue;
        }
        repo_options ro = options_for(s, spec);
        ro.uri = m->uri;
        if ((error = repo_open(&m->pub.repo, &ro)) < 0) {
            if (spec != NULL)
                err_set(error, "repos.%s: %s", spec->name, err_message());
            goto fail;
        }
        if (spec != NULL)
            LOG_INFO(MODULE, "repository %s: %s", spec->name, repo_display_uri(m->pub.repo));
    }
    if (nspecs > 0 && !repo_is_git(s->configured[0]->pub.repo)) {
        error = err_set(ERR_BAD_REQUEST, "repos: needs a Git default repository (--repo), not "
                                         "a plain directory");
        goto fail;
    }
    *out = s;
    return 0;
fail:
    repo_set_free(s);
    return error;
}

int repo_set_single(repo_set **out, repo *r, char **search_paths)
{
    static const repo_specs none = {0};
    repo_options base = {.uri = repo_display_uri(r)};
    repo_set *s = calloc(1, sizeof(*s));
    member *m = member_new("", repo_display_uri(r));
    if (s == NULL || m == NULL || (s->configured = calloc(1, sizeof(*s->configured))) == NULL ||
        (s->cloning = json_object()) == NULL || (s->misses = json_object()) == NULL) {
        if (s != NULL) {
            free(s->configured);
            json_decref(s->cloning);
            free(s);
        }
        member_free(m, false);
        return err_set(ERR_NOMEM, "out of memory");
    }
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cloned, NULL);
    s->base = base;
    s->specs = &none;
    s->max_mirrors = 1;
    m->borrowed = true;
    m->pub.repo = r;
    m->pub.search_paths = search_paths;
    s->configured[s->count++] = m;
    *out = s;
    return 0;
}

/* The empty stand-in, made on first need: a plain directory with nothing in it. */
static member *empty_member(repo_set *s)
{
    if (s->empty != NULL)
        return s->empty;
    char *dir = NULL;
    if (asprintf(&dir, "dir:%s/empty-repository", s->base.cache_dir) < 0)
        return NULL;
    mkdir(s->base.cache_dir, 0700);
    if (mkdir(dir + 4, 0700) < 0 && errno != EEXIST) {
        LOG_WARN(MODULE, "cannot create %s: %s", dir + 4, strerror(errno));
        free(dir);
        return NULL;
    }
    member *m = member_new("", dir);
    repo_options ro = s->base;
    ro.uri = dir;
    ro.allowed_signers_file = NULL; /* nothing in it, so no commit to verify (a dir: refuses) */
    if (m == NULL || (m->pub.search_paths = calloc(1, sizeof(char *))) == NULL ||
        repo_open(&m->pub.repo, &ro) < 0) {
        LOG_WARN(MODULE, "cannot open %s: %s", dir, err_message());
        free(dir);
        member_free(m, false);
        return NULL;
    }
    free(dir);
    m->pub.is_empty = true;
    s->empty = m;
    return m;
}

void repo_set_free(repo_set *s)
{
    if (s == NULL)
        return;
    for (member *m = s->mirrors, *next; m != NULL; m = next) {
        next = m->next;
        member_free(m, false);
    }
    for (size_t i = 0; i < s->count; i++)
        member_free(s->configured[i], false);
    member_free(s->empty, false);
    free(s->configured);
    json_decref(s->cloning);
    json_decref(s->misses);
    pthread_cond_destroy(&s->cloned);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

size_t repo_set_count(const repo_set *s)
{
    return s->count;
}

repo_source *repo_set_at(repo_set *s, size_t i)
{
    return i < s->count ? &s->configured[i]->pub : NULL;
}

repo_source *repo_set_match(repo_set *s, const char *applications, const char *profiles)
{
    int i = reposet_match(s->specs, applications, profiles);
    return &s->configured[i < 0 ? 0 : (size_t)i + 1]->pub;
}

repo_source *repo_set_owner(repo_source *src)
{
    member *m = (member *)src;
    return m->tmpl != NULL ? &m->tmpl->pub : src;
}

/* Lock held: the mirror of key, or NULL. */
static member *find_mirror(repo_set *s, const char *key)
{
    for (member *m = s->mirrors; m != NULL; m = m->next)
        if (strcmp(m->key, key) == 0)
            return m;
    return NULL;
}

/* Lock held: unlinks the least recently used mirror nobody reads, past the limit. Returns the
 * ones to free (their last holder was the list). */
static member *evict(repo_set *s)
{
    member *freed = NULL;
    while (s->nmirrors > s->max_mirrors) {
        member **victim = NULL;
        for (member **link = &s->mirrors; *link != NULL; link = &(*link)->next)
            if (victim == NULL || (*link)->last_used < (*victim)->last_used)
                victim = link;
        if (victim == NULL)
            break;
        member *m = *victim;
        *victim = m->next;
        s->nmirrors--;
        m->evicted = true;
        LOG_INFO(MODULE, "repository %s: more than %u mirrors, dropping the least recently used "
                 "(%s)", m->tmpl->name, s->max_mirrors, m->key);
        if (--m->refs == 0) {
            m->next = freed;
            freed = m;
        }
    }
    return freed;
}

static void free_evicted(member *list)
{
    while (list != NULL) {
        member *next = list->next;
        member_free(list, true);
        list = next;
    }
}

static bool missed_recently(repo_set *s, const char *key)
{
    json_t *until = json_object_get(s->misses, key);
    if (until == NULL)
        return false;
    if ((unsigned long)json_integer_value(until) > now_seconds())
        return true;
    json_object_del(s->misses, key);
    return false;
}

static void remember_miss(repo_set *s, const char *key)
{
    if (json_object_size(s->misses) >= MISSES_MAX) {
        const char *k;
        json_t *v;
        void *tmp;
        unsigned long now = now_seconds();
        json_object_foreach_safe(s->misses, tmp, k, v)
        {
            if ((unsigned long)json_integer_value(v) <= now)
                json_object_del(s->misses, k);
        }
        if (json_object_size(s->misses) >= MISSES_MAX)
            json_object_clear(s->misses);
    }
    json_object_set_new(s->misses, key,
                        json_integer((json_int_t)(now_seconds() + s->miss_seconds)));
}

/* The mirror of one expanded uri: found, cloned now, or NULL (a failure, remembered). */
static member *mirror_of(repo_set *s, member *tmpl, const char *key, const char *label)
{
    member *m = NULL, *freed = NULL;
    pthread_mutex_lock(&s->lock);
    for (;;) {
        if ((m = find_mirror(s, key)) != NULL) {
            m->refs++;
            m->last_used = ++s->tick;
            break;
        }
        if (missed_recently(s, key))
            break;
        if (json_object_get(s->cloning, key) == NULL)
            break;
        pthread_cond_wait(&s->cloned, &s->lock); /* another request clones it */
    }
    if (m != NULL || json_object_get(s->misses, key) != NULL) {
        pthread_mutex_unlock(&s->lock);
        return m;
    }
    json_object_set_new(s->cloning, key, json_true());
    atomic_fetch_add(&tmpl->pub.clone_attempts, 1);
    pthread_mutex_unlock(&s->lock);

    const repo_spec *spec = &s->specs->items[0];
    for (size_t i = 0; i < s->count; i++)
        if (s->configured[i] == tmpl)
            spec = &s->specs->items[i - 1];
    (void)label;
    member *fresh = member_new(tmpl->name, key);
    repo_options ro = options_for(s, spec);
    ro.uri = key;
    if (fresh != NULL) {
        fresh->tmpl = tmpl;
        fresh->pub.search_paths = tmpl->pub.search_paths;
        fresh->pub.refresh_interval = tmpl->pub.refresh_interval;
        if ((fresh->key = strdup(key)) == NULL || repo_open(&fresh->pub.repo, &ro) < 0) {
            LOG_WARN(MODULE, "repository %s: %s unavailable for %us, answered as empty: %s",
                     tmpl->name, key, s->miss_seconds, err_message());
            member_free(fresh, false);
            fresh = NULL;
        }
    }
    pthread_mutex_lock(&s->lock);
    json_object_del(s->cloning, key);
    if (fresh != NULL) {
        fresh->refs = 2; /* the list and the caller */
        fresh->last_used = ++s->tick;
        fresh->next = s->mirrors;
        s->mirrors = fresh;
        s->nmirrors++;
        freed = evict(s);
    } else {
        remember_miss(s, key);
    }
    pthread_cond_broadcast(&s->cloned);
    pthread_mutex_unlock(&s->lock);
    free_evicted(freed);
    return fresh;
}

int repo_set_pick(repo_set *s, const char *applications, const char *profiles, const char *label,
                  repo_source **out)
{
    member *tmpl = (member *)repo_set_match(s, applications, profiles);
    *out = &tmpl->pub;
    if (!tmpl->pub.is_template)
        return 0;
    if (profiles == NULL || profiles[0] == '\0')
        profiles = "default";
    const repo_spec *spec = NULL;
    for (size_t i = 1; i < s->count; i++)
        if (s->configured[i] == tmpl)
            spec = &s->specs->items[i - 1];
    /* As Spring: no label named, a {label} uri takes the repository's default label. */
    if ((label == NULL || label[0] == '\0') && strstr(tmpl->uri, "{label}") != NULL)
        label = spec && spec->default_label ? spec->default_label
                : s->base.default_label  ? s->base.default_label
                                         : "main";
    /* As Spring: each profile's expansion in turn, the last profile first. */
    size_t plen = strlen(profiles);
    char *copy = strdup(profiles);
    if (copy == NULL)
        return err_set(ERR_NOMEM, "out of memory");
    member *found = NULL;
    for (size_t end = plen; found == NULL;) {
        size_t start = end;
        while (start > 0 && copy[start - 1] != ',')
            start--;
        copy[end] = '\0';
        char *key = reposet_expand(tmpl->uri, applications, copy + start, label);
        if (key == NULL) {
            free(copy);
            return err_set(ERR_NOMEM, "out of memory");
        }
        found = mirror_of(s, tmpl, key, label);
        free(key);
        if (start == 0 || strstr(tmpl->uri, "{profile}") == NULL)
            break;
        end = start - 1;
    }
    free(copy);
    if (found != NULL) {
        *out = &found->pub;
        return 0;
    }
    pthread_mutex_lock(&s->lock);
    member *empty = empty_member(s);
    pthread_mutex_unlock(&s->lock);
    if (empty == NULL)
        return err_set(ERR_NOMEM, "cannot make the empty source");
    *out = &empty->pub;
    return 0;
}

void repo_set_release(repo_set *s, repo_source *src)
{
    member *m = (member *)src;
    if (s == NULL || m == NULL || m->tmpl == NULL)
        return;
    pthread_mutex_lock(&s->lock);
    bool last = --m->refs == 0;
    pthread_mutex_unlock(&s->lock);
    if (last)
        member_free(m, m->evicted);
}

size_t repo_set_mirrors(repo_set *s, const repo_source *tmpl, repo_source ***out)
{
    size_t n = 0;
    *out = NULL;
    pthread_mutex_lock(&s->lock);
    repo_source **list = calloc(s->nmirrors + 1, sizeof(*list));
    for (member *m = s->mirrors; list != NULL && m != NULL; m = m->next)
        if (&m->tmpl->pub == tmpl) {
            m->refs++;
            list[n++] = &m->pub;
        }
    pthread_mutex_unlock(&s->lock);
    *out = list;
    return n;
}

char *repo_set_metrics(repo_set *s, size_t *len)
{
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    if (f == NULL)
        return NULL;
    fputs("# HELP almanac_repository_fetch_total Fetches from each repository's remote (a "
          "template's: of all its mirrors).\n# TYPE almanac_repository_fetch_total counter\n", f);
    for (size_t i = 0; i < s->count; i++) {
        repo_source *src = &s->configured[i]->pub;
        fprintf(f, "almanac_repository_fetch_total{repository=\"%s\",result=\"ok\"} %lu\n",
                src->name[0] ? src->name : "default", atomic_load(&src->fetches_ok));
        fprintf(f, "almanac_repository_fetch_total{repository=\"%s\",result=\"failed\"} %lu\n",
                src->name[0] ? src->name : "default", atomic_load(&src->fetches_failed));
    }
    fputs("# HELP almanac_repository_up Whether each repository's last fetch succeeded (a "
          "template: all of its mirrors').\n# TYPE almanac_repository_up gauge\n", f);
    for (size_t i = 0; i < s->count; i++) {
        repo_source *src = &s->configured[i]->pub;
        bool up = true;
        if (src->repo != NULL) {
            repo_status st;
            repo_get_status(src->repo, &st);
            up = !st.degraded;
        } else {
            pthread_mutex_lock(&s->lock);
            for (member *m = s->mirrors; m != NULL; m = m->next) {
                if (m->tmpl != s->configured[i])
                    continue;
                repo_status st;
                repo_get_status(m->pub.repo, &st);
                up = up && !st.degraded;
            }
            pthread_mutex_unlock(&s->lock);
        }
        fprintf(f, "almanac_repository_up{repository=\"%s\"} %d\n", src->name[0] ? src->name : "default", up ? 1 : 0);
    }
    fputs("# HELP almanac_repository_clones_total Clones of a template repository's mirrors "
          "tried (a failure is remembered for --mirror-miss-seconds).\n"
          "# TYPE almanac_repository_clones_total counter\n", f);
    for (size_t i = 0; i < s->count; i++) {
        repo_source *src = &s->configured[i]->pub;
        if (src->is_template)
            fprintf(f, "almanac_repository_clones_total{repository=\"%s\"} %lu\n", src->name,
                    atomic_load(&src->clone_attempts));
    }
    fprintf(f, "# HELP almanac_repository_mirrors Mirrors of template repositories on disk.\n"
               "# TYPE almanac_repository_mirrors gauge\nalmanac_repository_mirrors %zu\n",
            repo_set_mirror_count(s));
    if (fclose(f) != 0) {
        free(text);
        return NULL;
    }
    *len = size;
    return text;
}

size_t repo_set_mirror_count(repo_set *s)
{
    pthread_mutex_lock(&s->lock);
    size_t n = s->nmirrors;
    pthread_mutex_unlock(&s->lock);
    return n;
}

/* "https://user@Host/team/cfg.git/" -> "host/team/cfg"; "git@host:team/cfg" -> "host/team/cfg";
 * "file:///srv/cfg" and "/srv/cfg" -> "/srv/cfg". */
static void uri_key(const char *uri, char *out, size_t size)
{
    const char *p = uri, *scheme = strstr(uri, "://");
    bool has_host = false;
    if (scheme != NULL) {
        has_host = strncmp(uri, "file://", 7) != 0;
        p = scheme + 3;
    } else if (uri[0] != '/' && strchr(uri, ':') != NULL) {
        has_host = true; /* scp-like git@host:path */
    }
    size_t n = 0;
    if (has_host) {
        const char *slash = p + strcspn(p, "/");
        const char *at = memchr(p, '@', (size_t)(slash - p));
        if (at != NULL)
            p = at + 1;
        /* the host, lower-cased, without a port; scp-like "host:path" turns into "host/path" */
        for (; *p != '\0' && *p != '/' && *p != ':' && n + 1 < size; p++)
            out[n++] = (char)tolower((unsigned char)*p);
        if (*p == ':') {
            p++;
            while (*p >= '0' && *p <= '9' && strchr(uri, '/') != NULL && scheme != NULL)
                p++; /* a port */
            if (n + 1 < size)
                out[n++] = '/';
        }
    }
    for (; *p != '\0' && n + 1 < size; p++)
        if (!(*p == '/' && n > 0 && out[n - 1] == '/'))
            out[n++] = *p;
    out[n] = '\0';
    while (n > 0 && out[n - 1] == '/')
        out[--n] = '\0';
    if (n > 4 && strcmp(out + n - 4, ".git") == 0)
        out[n -= 4] = '\0';
    while (n > 0 && out[n - 1] == '/')
        out[--n] = '\0';
}

bool repo_set_same_uri(const char *a, const char *b)
{
    char ka[4096], kb[4096];
    uri_key(a, ka, sizeof(ka));
    uri_key(b, kb, sizeof(kb));
    return ka[0] != '\0' && strcmp(ka, kb) == 0;
}

bool repo_set_serves_uri(repo_set *s, repo_source *src, const char *uri)
{
    if (!src->is_template)
        return repo_set_same_uri(src->uri, uri) ||
               (src->repo != NULL && repo_set_same_uri(repo_display_uri(src->repo), uri));
    repo_source **mirrors = NULL;
    size_t n = repo_set_mirrors(s, src, &mirrors);
    bool found = false;
    for (size_t i = 0; i < n; i++) {
        found = found || repo_set_same_uri(mirrors[i]->uri, uri);
        repo_set_release(s, mirrors[i]);
    }
    free(mirrors);
    return found;
}
