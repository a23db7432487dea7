/*
 * announce — the list of change listeners (see announce.h). It owns the list only: what a
 * change is, and when one happened, is refresh.c's business; what to do about it is each
 * listener's.
 */
#include "change/announce.h"

#include "errors.h"

#include <stdlib.h>

struct change_announcer {
    struct {
        change_listener fn;
        void *ctx;
    } listeners[CHANGE_MAX_LISTENERS];
    size_t count;
};

int change_announcer_new(change_announcer **out)
{
    *out = calloc(1, sizeof(**out));
    return *out == NULL ? err_set(ERR_NOMEM, "out of memory") : 0;
}

void change_announcer_free(change_announcer *a)
{
    free(a);
}

int change_subscribe(change_announcer *a, change_listener fn, void *ctx)
{
    if (a->count == CHANGE_MAX_LISTENERS)
        return err_set(ERR_INTERNAL, "more than %d change listeners", CHANGE_MAX_LISTENERS);
    a->listeners[a->count].fn = fn;
    a->listeners[a->count].ctx = ctx;
    a->count++;
    return 0;
}

void change_announce(const change_announcer *a, const change_notice *notice)
{
    for (size_t i = 0; a != NULL && i < a->count; i++)
        a->listeners[i].fn(a->listeners[i].ctx, notice);
}
