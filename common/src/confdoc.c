/*
 * confdoc — lifetime of parsed documents (see confdoc.h). Parsing lives in yamlconf.c and
 * propfile.c.
 */
#include "confdoc.h"

#include <stdlib.h>
#include <string.h>

confdoc *confdoc_list_append(confdoc_list *list)
{
    confdoc *grown = realloc(list->docs, (list->count + 1) * sizeof(*grown));
    if (grown == NULL)
        return NULL;
    list->docs = grown;
    confdoc *doc = &grown[list->count];
    memset(doc, 0, sizeof(*doc));
    doc->props = json_object();
    doc->origins = json_object();
    if (doc->props == NULL || doc->origins == NULL) {
        json_decref(doc->props);
        json_decref(doc->origins);
        return NULL;
    }
    doc->index = (unsigned)list->count;
    list->count++;
    return doc;
}

void confdoc_list_dispose(confdoc_list *list)
{
    if (list == NULL)
        return;
    for (size_t i = 0; i < list->count; i++) {
        json_decref(list->docs[i].props);
        json_decref(list->docs[i].origins);
        free(list->docs[i].on_profile);
    }
    free(list->docs);
    list->docs = NULL;
    list->count = 0;
}
