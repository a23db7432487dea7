/*
 * refresh — fetch and invalidate (see refresh.h). Snapshots and rendered responses are keyed by
 * commit id, so after a Git fetch nothing needs dropping: new commits simply miss the caches.
 * Dir mode has no commit ids, so there both caches are cleared.
 */
#include "refresh.h"

#include "errors.h"
#include "log.h"
#include "render.h"
#include "repo.h"
#include "server.h"
#include "snapshot.h"
#include "watch.h"

#include <pthread.h>
#include <string.h>

#define MODULE "refresh"

static pthread_mutex_t refresh_lock = PTHREAD_MUTEX_INITIALIZER;

int refresh_now(struct server *srv, refresh_result *out)
{
    int error = 0;
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&refresh_lock);
    if (repo_is_git(srv->repo)) {
        bool changed = false;
        error = repo_fetch(srv->repo, &changed);
        if (error < 0) {
            LOG_WARN(MODULE, "fetch failed, still serving the cached mirror: %s", err_message());
            goto out;
        }
        out->changed = changed;
    } else {
        snapcache_invalidate(srv->snapshots);
        respcache_clear(srv->responses);
        out->changed = true;
    }
    char commit[REPO_COMMIT_HEX] = "";
    if (repo_resolve(srv->repo, NULL, commit) == 0)
        memcpy(out->version, commit, sizeof(out->version));
    if (out->changed) {
        LOG_INFO(MODULE, "refreshed, default label now at %s",
                 out->version[0] ? out->version : "(dir)");
        if (srv->watches != NULL)
            watch_notify(srv->watches);
    }
out:
    pthread_mutex_unlock(&refresh_lock);
    return error;
}
