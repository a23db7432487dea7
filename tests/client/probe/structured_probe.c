/*
 * structured_probe — boots from a real server and answers structured lookups, for
 * test_client_structured.py. Usage: structured_probe URL APP PROFILES COMMAND… where each
 * command is one argument and prints one line:
 *   len:KEY          -> "len KEY N" or "len KEY error CODE"
 *   str:KEY:I        -> "str KEY[I] VALUE"       (alm_config_list_get_string)
 *   int:KEY:I        -> "int KEY[I] N"           (alm_config_list_get_int64)
 *   bool:KEY:I       -> "bool KEY[I] 0|1"
 *   double:KEY:I     -> "double KEY[I] %g"
 *   array:KEY        -> "array KEY a|b|c"        (alm_config_get_strarray)
 *   under:PREFIX     -> "under PREFIX k1=v1,k2=v2" (alm_config_foreach_under)
 *   relaxed:NAME     -> "relaxed NAME KEY=VALUE" (alm_config_relaxed_key)
 * Any failure prints "<what> error CODE" instead.
 */
#include "almanac.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int print_entry(const alm_config_entry *e, void *payload)
{
    int *first = payload;
    printf("%s%s=%s", *first ? "" : ",", e->key, e->value);
    *first = 0;
    return 0;
}

static void run(const alm_config *cfg, char *command)
{
    char *save = NULL;
    const char *what = strtok_r(command, ":", &save);
    const char *key = strtok_r(NULL, ":", &save);
    const char *index_text = strtok_r(NULL, ":", &save);
    size_t index = index_text != NULL ? strtoul(index_text, NULL, 10) : 0;
    int error = 0;
    if (what == NULL || key == NULL) {
        printf("bad command\n");
        return;
    }
    if (strcmp(what, "len") == 0) {
        size_t n = 0;
        if ((error = alm_config_list_len(&n, cfg, key)) == 0)
            printf("len %s %zu\n", key, n);
    } else if (strcmp(what, "str") == 0) {
        const char *s = NULL;
        if ((error = alm_config_list_get_string(&s, cfg, key, index)) == 0)
            printf("str %s[%zu] %s\n", key, index, s);
    } else if (strcmp(what, "int") == 0) {
        int64_t n = 0;
        if ((error = alm_config_list_get_int64(&n, cfg, key, index)) == 0)
            printf("int %s[%zu] %lld\n", key, index, (long long)n);
    } else if (strcmp(what, "bool") == 0) {
        int b = 0;
        if ((error = alm_config_list_get_bool(&b, cfg, key, index)) == 0)
            printf("bool %s[%zu] %d\n", key, index, b);
    } else if (strcmp(what, "double") == 0) {
        double d = 0;
        if ((error = alm_config_list_get_double(&d, cfg, key, index)) == 0)
            printf("double %s[%zu] %g\n", key, index, d);
    } else if (strcmp(what, "array") == 0) {
        alm_strarray arr = {NULL, 0};
        if ((error = alm_config_get_strarray(&arr, cfg, key)) == 0) {
            printf("array %s ", key);
            for (size_t i = 0; i < arr.count; i++)
                printf("%s%s", i ? "|" : "", arr.strings[i]);
            printf("\n");
        }
        alm_strarray_dispose(&arr);
    } else if (strcmp(what, "under") == 0) {
        int first = 1;
        printf("under %s ", key);
        error = alm_config_foreach_under(cfg, key, print_entry, &first);
        printf("\n");
    } else if (strcmp(what, "relaxed") == 0) {
        const char *found = NULL, *value = NULL;
        if ((error = alm_config_relaxed_key(&found, cfg, key)) == 0 &&
            (error = alm_config_get_string(&value, cfg, found)) == 0)
            printf("relaxed %s %s=%s\n", key, found, value);
    } else {
        printf("bad command %s\n", what);
        return;
    }
    if (error != 0)
        printf("%s %s error %d\n", what, key, error);
}

int main(int argc, char **argv)
{
    alm_client_options opts = ALM_CLIENT_OPTIONS_INIT;
    alm_client *client = NULL;
    alm_config *cfg = NULL;
    if (argc < 4) {
        fprintf(stderr, "usage: structured_probe URL APP PROFILES COMMAND...\n");
        return 2;
    }
    opts.server = argv[1];
    opts.application = argv[2];
    opts.profiles = argv[3];
    opts.fail_fast = 1;
    if (alm_client_new(&client, &opts) < 0 || alm_client_fetch(&cfg, client) < 0) {
        fprintf(stderr, "structured_probe: %s\n", alm_error_last()->message);
        alm_client_free(client);
        return 1;
    }
    for (int i = 4; i < argc; i++)
        run(cfg, argv[i]);
    alm_config_free(cfg);
    alm_client_free(client);
    return 0;
}
