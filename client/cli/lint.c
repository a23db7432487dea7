/*
 * lint — `almanac lint DIR`: checks a configuration repository before it is committed, with the
 * very parsers the server uses (common/'s yamlconf and propfile, same limits), so what passes
 * here parses there. It reports, one `file:line:col: message` line each on stdout:
 *   - YAML and .properties files that do not parse (syntax, duplicate keys, limits);
 *   - a `{cipher}` value left unquoted in YAML, which YAML reads as a map ({cipher: null});
 *   - a `{cipher}` value quoted in .properties, where the quotes become part of the value;
 *   - a file name that no request can select (`orders-.yml`, an empty profile);
 *   - a malformed `spring.config.activate.on-profile` (or legacy `spring.profiles`) expression,
 *     checked with the server's own profile_expr, which fails the whole file on one;
 *   - what Spring Boot refuses with a 500 and Almanac serves anyway (springconf.c names the
 *     keys): the legacy `spring.profiles` key, `spring.profiles.include`/`active`/`default` in
 *     a profile-specific file or an on-profile document, an unknown on-cloud-platform;
 *   - a `spring.config.import` that Almanac will not read (outside the repository).
 * A file counts as profile-specific when its name is `application-*` or starts with the name of
 * a sibling configuration file and a `-` (`orders-dev.yml` beside `orders.yml`): that is how a
 * request reads it. A `foo-bar.yml` alone is the plain file of application `foo-bar`.
 * With `--config FILE` it also reads the server's settings file the way almanac-server does for
 * its `repos:` section (common/reposet.c, the same parser and matching), reports a bad entry
 * as `file:line:col: message`, and `--which APP[/PROFILES]` prints which repository serves a
 * request, as the server would choose it.
 * It needs no server and uses no part of libalmanac.
 *
 * With --verify-commits --allowed-signers FILE it also checks, before a push, that a commit of
 * the Git repository DIR belongs to (HEAD, or --revision REV) carries an SSH signature by an
 * allowed signer: the server's own check (repo_verify_commit), so a commit that passes here is
 * one a server with the same file serves.
 */
#include "cli.h"
#include "confdoc.h"
#include "err.h"
#include "fileread.h"
#include "profile_expr.h"
#include "source/repo.h"
#include "propfile.h"
#include "reposet.h"
#include "springconf.h"
#include "yamlconf.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_DEPTH 32
#define MAX_FILES 100000

typedef struct lint_state {
    unsigned long files;
    unsigned long problems;
    int failed; /* an I/O error, as opposed to findings */
} lint_state;

static void help(void)
{
    printf("usage: almanac lint [--config FILE [--which APP[/PROFILES]]...]\n"
           "                    [--verify-commits --allowed-signers FILE [--revision REV]] [DIR]\n\n"
           "Checks the configuration files under DIR (*.yml, *.yaml, *.properties; .git and\n"
           "other dot-directories are skipped) with the server's own parsers, and reports\n"
           "each problem as 'file:line:col: message' on stdout:\n"
           "  - files that do not parse (syntax, duplicate keys, size and nesting limits);\n"
           "  - {cipher} values left unquoted in YAML (YAML reads them as a map);\n"
           "  - {cipher} values quoted in .properties (the quotes become part of the value);\n"
           "  - file names no request can select (an empty application or profile);\n"
           "  - malformed spring.config.activate.on-profile (or spring.profiles) expressions\n"
           "    such as 'dev & prod | test' (the server rejects the whole file);\n"
           "  - what Spring Boot refuses and Almanac serves anyway: the legacy spring.profiles\n"
           "    key, spring.profiles.include/active/default in a profile-specific file or an\n"
           "    on-profile document, an unknown spring.config.activate.on-cloud-platform;\n"
           "  - spring.config.import locations outside the repository (never read).\n\n"
           "--config FILE checks the repos: section of almanac-server's settings file (the\n"
           "server's own parser); --which APP[/PROFILES] (repeatable) then prints which\n"
           "repository serves that request and the URI it reads: 'APP/PROFILES: NAME URI',\n"
           "NAME 'default' for the --repo repository.\n\n"
           "--verify-commits also checks that the commit REV (default HEAD) of the Git\n"
           "repository DIR is in is signed (git commit -S with gpg.format=ssh) by a key of the\n"
           "allowed signers FILE (Git's gpg.ssh.allowedSignersFile format), exactly as\n"
           "almanac-server --verify-commits checks what it serves; a refusal is reported as\n"
           "'REV: why' and counts as a problem.\n\n"
           "Exit codes: 0 no problem, 1 problems found or a file could not be read,\n"
           "2 bad command line.\n");
}

#if defined(__GNUC__)
__attribute__((format(printf, 5, 6)))
#endif
static void
report(lint_state *st, const char *path, unsigned line, unsigned col, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    printf("%s:%u:%u: %s\n", path, line, col, msg);
    st->problems++;
}

/* The "LINE:COL" origin of a key in a parsed document, as numbers (0:0 when unknown). */
static void origin_of(const confdoc *doc, const char *key, unsigned *line, unsigned *col)
{
    const char *o = json_string_value(json_object_get(doc->origins, key));
    *line = *col = 0;
    if (o != NULL && sscanf(o, "%u:%u", line, col) != 2)
        *line = *col = 0;
}

static void check_ciphers(lint_state *st, const char *path, const confdoc_list *docs, int yaml)
{
    for (size_t d = 0; d < docs->count; d++) {
        const confdoc *doc = &docs->docs[d];
        const char *key;
        json_t *value;
        json_object_foreach(doc->props, key, value)
        {
            unsigned line, col;
            const char *text = json_string_value(value);
            size_t klen = strlen(key);
            if (yaml && klen >= 6 && strcmp(key + klen - 6, "cipher") == 0 &&
                (klen == 6 || key[klen - 7] == '.') && text != NULL && *text == '\0') {
                origin_of(doc, key, &line, &col);
                report(st, path, line, col,
                       "'%.*s' looks like an unquoted {cipher} value, which YAML reads as a "
                       "map; quote it: '{cipher}…'",
                       klen > 7 ? (int)(klen - 7) : 0, key);
            }
            if (!yaml && text != NULL &&
                (strncmp(text, "\"{cipher}", 9) == 0 || strncmp(text, "'{cipher}", 9) == 0)) {
                origin_of(doc, key, &line, &col);
                report(st, path, line, col,
                       "'%s': quotes around a {cipher} value in .properties become part of "
                       "the value; remove them",
                       key);
            }
        }
    }
}

/*
 * The server fails a whole file over one malformed expression (as Spring fails the load), so
 * each document's is checked. YAML may give spring.profiles as a list, joined with commas by
 * the parser; its position is then that of the first item.
 */
static void check_profiles(lint_state *st, const char *path, const confdoc_list *docs)
{
    static const char *const keys[] = {"spring.config.activate.on-profile", "spring.profiles",
                                       "spring.profiles[0]"};
    for (size_t d = 0; d < docs->count; d++) {
        const confdoc *doc = &docs->docs[d];
        char msg[384];
        unsigned line = 0, col = 0;
        if (doc->on_profile == NULL ||
            profile_expr_validate(doc->on_profile, msg, sizeof(msg)) == 0)
            continue;
        size_t k = 0;
        while (k < sizeof(keys) / sizeof(keys[0]) - 1 &&
               json_object_get(doc->origins, keys[k]) == NULL)
            k++;
        origin_of(doc, keys[k], &line, &col);
        report(st, path, line, col, "%s: %s", k == 0 ? keys[0] : keys[1], msg);
    }
}

/* Whether a configuration file named stem.{properties,yml,yaml} exists in dir. */
static int sibling_exists(const char *dir, const char *stem, size_t len)
{
    static const char *const exts[] = {".properties", ".yml", ".yaml"};
    for (size_t i = 0; i < sizeof(exts) / sizeof(*exts); i++) {
        char path[4096];
        struct stat sb;
        if ((size_t)snprintf(path, sizeof(path), "%s/%.*s%s", dir, (int)len, stem, exts[i]) <
                sizeof(path) &&
            stat(path, &sb) == 0 && S_ISREG(sb.st_mode))
            return 1;
    }
    return 0;
}

/* A request reads name as a profile variant: application-*, or <sibling>-*. */
static int is_profile_specific(const char *path, const char *name, size_t stem_len)
{
    const char *slash = strrchr(path, '/');
    char dir[4096];
    if (slash == NULL || (size_t)(slash - path) >= sizeof(dir))
        return 0;
    snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
    for (size_t i = 1; i < stem_len; i++) {
        if (name[i] != '-')
            continue;
        if ((i == 11 && strncmp(name, "application", 11) == 0) || sibling_exists(dir, name, i))
            return 1;
    }
    return 0;
}

/* Whether a relative import from a file `depth` folders below the root climbs out of it. */
static int import_escapes(const char *loc, unsigned depth)
{
    long level = (long)depth;
    for (const char *s = loc; *s != '\0';) {
        size_t len = strcspn(s, "/");
        if (len == 2 && s[0] == '.' && s[1] == '.') {
            if (--level < 0)
                return 1;
        } else if (len > 0 && !(len == 1 && s[0] == '.')) {
            level++;
        }
        s += len;
        if (*s == '/')
            s++;
    }
    return 0;
}

static void report_key(lint_state *st, const char *path, const confdoc *doc, const char *key,
                       const char *what)
{
    unsigned line, col;
    origin_of(doc, key, &line, &col);
    report(st, path, line, col, "%s", what);
}

/*
 * Spring Boot's refusals (InvalidConfigDataPropertyException, InactiveConfigDataAccessException,
 * an unbindable CloudPlatform), which Almanac serves, and imports Almanac will not read.
 */
static void check_config_data(lint_state *st, const char *path, unsigned depth,
                              const confdoc_list *docs, int profile_specific)
{
    for (size_t d = 0; d < docs->count; d++) {
        const confdoc *doc = &docs->docs[d];
        const char *key, *cloud;
        char msg[512];
        json_t *imports;
        if ((key = springconf_legacy_key(doc->props)) != NULL) {
            snprintf(msg, sizeof(msg),
                     "Property '%s' is invalid and should be replaced with "
                     "'spring.config.activate.on-profile' (Spring Boot refuses the file; Almanac "
                     "still reads it as on-profile)",
                     key);
            report_key(st, path, doc, key, msg);
        }
        if (profile_specific && (key = springconf_profile_key(doc->props, false)) != NULL) {
            snprintf(msg, sizeof(msg),
                     "Property '%s' is invalid in a profile specific resource (Spring Boot "
                     "refuses the request; Almanac ignores it)",
                     key);
            report_key(st, path, doc, key, msg);
        } else if (json_object_get(doc->props, "spring.config.activate.on-profile") != NULL &&
                   (key = springconf_profile_key(doc->props, true)) != NULL) {
            snprintf(msg, sizeof(msg),
                     "an on-profile document cannot contain property '%s' (Spring Boot refuses "
                     "the request: an inactive property source cannot contain it; Almanac "
                     "ignores it)",
                     key);
            report_key(st, path, doc, key, msg);
        }
        cloud = json_string_value(json_object_get(doc->props, SPRINGCONF_ON_CLOUD));
        if (json_object_get(doc->props, SPRINGCONF_ON_CLOUD) != NULL &&
            (cloud == NULL || springconf_platform(cloud) == NULL)) {
            snprintf(msg, sizeof(msg),
                     "%s: not a cloud platform (none, kubernetes, cloud_foundry, heroku, sap, "
                     "nomad, azure_app_service, aws_ecs); Spring Boot refuses the request, "
                     "Almanac never applies this document",
                     SPRINGCONF_ON_CLOUD);
            report_key(st, path, doc, SPRINGCONF_ON_CLOUD, msg);
        }
        imports = springconf_list(doc->props, SPRINGCONF_IMPORT);
        for (size_t i = 0; i < json_array_size(imports); i++) {
            const char *loc = json_string_value(json_array_get(imports, i));
            const char *why;
            if (strncmp(loc, "optional:", 9) == 0)
                loc += 9;
            why = springconf_import_problem(loc);
            if (why == NULL && import_escapes(loc, depth))
                why = "'..' leads out of the repository";
            if (why == NULL)
                continue;
            char item[64];
            snprintf(msg, sizeof(msg), "%s '%s': Almanac never reads it: %s", SPRINGCONF_IMPORT,
                     loc, why);
            if (json_object_get(doc->props, SPRINGCONF_IMPORT) != NULL)
                snprintf(item, sizeof(item), "%s", SPRINGCONF_IMPORT);
            else
                snprintf(item, sizeof(item), "%s[%zu]", SPRINGCONF_IMPORT, i);
            report_key(st, path, doc, item, msg);
        }
        json_decref(imports);
    }
}

/* `orders-.yml`, `-dev.yml`: a name whose application or profile part is empty. */
static void check_name(lint_state *st, const char *path, const char *name, size_t stem_len)
{
    const char *dash = memchr(name, '-', stem_len);
    if (stem_len == 0 || (dash != NULL && (dash == name || name[stem_len - 1] == '-')))
        report(st, path, 1, 1,
               "no request can select this file: its application or profile part is empty");
}

static void lint_file(lint_state *st, const char *path, const char *name, unsigned depth)
{
    const char *dot = strrchr(name, '.');
    int yaml = dot != NULL && (strcmp(dot, ".yml") == 0 || strcmp(dot, ".yaml") == 0);
    int props = dot != NULL && strcmp(dot, ".properties") == 0;
    if (!yaml && !props)
        return;
    st->files++;
    check_name(st, path, name, (size_t)(dot - name));

    confdoc_limits limits = CONFDOC_LIMITS_DEFAULT;
    confdoc_list docs = {0};
    confdoc_error err = {0};
    file_contents file = {0};
    int read = file_read(&file, path, limits.max_bytes, 0);
    if (read == ERR_TOO_LARGE) {
        report(st, path, 1, 1, "larger than the server's limit of %zu bytes", limits.max_bytes);
        goto out;
    }
    if (read < 0) {
        fprintf(stderr, "almanac: %s\n", err_message());
        st->failed = 1;
        goto out;
    }
    char *data = file.data;
    size_t len = file.len;
    int rc = yaml ? yamlconf_parse(&docs, data, len, &limits, &err)
                  : propfile_parse(&docs, data, len, &limits, &err);
    if (rc < 0) {
        /* The usual cause of a YAML error near a secret: {cipher}… left unquoted. */
        data[len] = '\0';
        int cipher =
            yaml && (strstr(data, ": {cipher}") != NULL || strstr(data, "- {cipher}") != NULL);
        report(st, path, err.line, err.col, "%s%s", err.message,
               cipher ? " (a {cipher} value must be quoted in YAML: '{cipher}…')" : "");
    } else {
        check_ciphers(st, path, &docs, yaml);
        check_profiles(st, path, &docs);
        check_config_data(st, path, depth, &docs,
                          is_profile_specific(path, name, (size_t)(dot - name)));
    }
out:
    confdoc_list_dispose(&docs);
    file_contents_dispose(&file);
}

static void lint_dir(lint_state *st, const char *dir, int depth)
{
    if (depth > MAX_DEPTH) {
        fprintf(stderr, "almanac: %s: nested deeper than %d levels; not checked\n", dir, MAX_DEPTH);
        st->failed = 1;
        return;
    }
    struct dirent **entries = NULL;
    int n = scandir(dir, &entries, NULL, alphasort); /* sorted: stable output */
    if (n < 0) {
        fprintf(stderr, "almanac: cannot read %s: %s\n", dir, strerror(errno));
        st->failed = 1;
        return;
    }
    for (int i = 0; i < n; i++) {
        const char *name = entries[i]->d_name;
        char path[4096];
        struct stat sb;
        if (name[0] != '.' && st->files < MAX_FILES &&
            (size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) < sizeof(path) &&
            lstat(path, &sb) == 0) {
            if (S_ISDIR(sb.st_mode))
                lint_dir(st, path, depth + 1);
            else if (S_ISREG(sb.st_mode))
                lint_file(st, path, name, (unsigned)depth);
        }
        free(entries[i]);
    }
    free(entries);
}

#define MAX_WHICH 64

/* The repository that serves app[/profiles] under the repos: of a settings file, and the URI
 * it reads from (a template's expanded for that application and the last profile, as the
 * server tries it first). */
static void print_which(const repo_specs *specs, const char *default_repo, const char *which)
{
    char apps[1024];
    const char *slash = strchr(which, '/');
    size_t alen = slash ? (size_t)(slash - which) : strlen(which);
    const char *profiles = slash && slash[1] ? slash + 1 : "default";
    snprintf(apps, sizeof(apps), "%.*s", (int)(alen < sizeof(apps) ? alen : sizeof(apps) - 1),
             which);
    int i = reposet_match(specs, apps, profiles);
    if (i < 0) {
        printf("%s/%s: default %s\n", apps, profiles, default_repo ? default_repo : "(--repo)");
        return;
    }
    const repo_spec *spec = &specs->items[i];
    const char *last = strrchr(profiles, ',');
    char *uri = reposet_expand(spec->uri, apps, last ? last + 1 : profiles,
                               strstr(spec->uri, "{label}") ? "{label}" : NULL);
    printf("%s/%s: %s %s\n", apps, profiles, spec->name, uri ? uri : spec->uri);
    free(uri);
}

/* --config: the repos: section, checked as almanac-server checks it; --which answered. */
static void lint_config(lint_state *st, const char *path, char **which, size_t nwhich)
{
    file_contents file = {0};
    confdoc_list list = {0};
    confdoc_error perr = {0};
    confdoc_limits limits = CONFDOC_LIMITS_DEFAULT;
    repo_specs specs = {0};
    const char *origin = NULL;
    st->files++;
    if (file_read(&file, path, limits.max_bytes, FILE_READ_REGULAR_ONLY) < 0) {
        fprintf(stderr, "almanac: %s\n", err_message());
        st->failed = 1;
        return;
    }
    if (yamlconf_parse(&list, file.data, file.len, &limits, &perr) < 0) {
        printf("%s:%u:%u: %s\n", path, perr.line, perr.col, perr.message);
        st->problems++;
        goto out;
    }
    if (list.count > 0 &&
        reposet_parse(&specs, list.docs[0].props, list.docs[0].origins, &origin) < 0) {
        printf("%s:%s: %s\n", path, origin ? origin : "1:1", err_message());
        st->problems++;
        goto out;
    }
    const char *default_repo =
        list.count > 0 ? json_string_value(json_object_get(list.docs[0].props, "repo")) : NULL;
    for (size_t i = 0; i < nwhich; i++)
        print_which(&specs, default_repo, which[i]);
out:
    reposet_dispose(&specs);
    confdoc_list_dispose(&list);
    free(file.data);
}

/* The commit rev of the repository dir is in: 0 verified, 1 refused (reported), <0 failed. */
static int verify_revision(lint_state *st, const char *dir, const char *rev, const char *signers)
{
    repo_options opts = {.uri = dir, .in_place = true, .allowed_signers_file = signers};
    char commit[REPO_COMMIT_HEX], signer[256];
    repo *r = NULL;
    int rc = -1;

    if (repo_open(&r, &opts) < 0) {
        fprintf(stderr, "almanac lint: %s\n", err_message());
        goto out;
    }
    int error = repo_resolve(r, rev, commit);
    if (error == 0)
        error = repo_verify_commit(r, commit, signer, sizeof(signer));
    if (error == ERR_FORBIDDEN) {
        printf("%s: %s\n", rev, err_message());
        st->problems++;
        rc = 1;
    } else if (error < 0) {
        fprintf(stderr, "almanac lint: %s: %s\n", rev, err_message());
    } else {
        fprintf(stderr, "almanac: %s (%s) is signed by %s\n", rev, commit, signer);
        rc = 0;
    }
out:
    repo_free(r);
    return rc;
}

int cli_cmd_lint(int argc, char **argv)
{
    lint_state st = {0};
    const char *dir = NULL, *signers = NULL, *revision = NULL;
    bool verify = false;
    if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        help();
        return CLI_EXIT_OK;
    }
    const char *config = NULL;
    char *which[MAX_WHICH];
    size_t nwhich = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            config = argv[++i];
        } else if (strcmp(argv[i], "--which") == 0 && i + 1 < argc) {
            if (nwhich == MAX_WHICH)
                return cli_usage_error("lint", "at most %d --which", MAX_WHICH);
            which[nwhich++] = argv[++i];
        } else if (strcmp(argv[i], "--verify-commits") == 0) {
            verify = true;
        } else if (strcmp(argv[i], "--allowed-signers") == 0 && i + 1 < argc) {
            signers = argv[++i];
        } else if (strcmp(argv[i], "--revision") == 0 && i + 1 < argc) {
            revision = argv[++i];
        } else if (argv[i][0] == '-' || dir != NULL) {
            return cli_usage_error("lint", "unexpected '%s'", argv[i]);
        } else {
            dir = argv[i];
        }
    }
    if (dir == NULL && config == NULL)
        return cli_usage_error("lint", "expected a directory or --config FILE");
    if (nwhich > 0 && config == NULL)
        return cli_usage_error("lint", "--which needs --config");
    if (verify != (signers != NULL))
        return cli_usage_error("lint", "--verify-commits and --allowed-signers FILE go together");
    if (revision != NULL && !verify)
        return cli_usage_error("lint", "--revision needs --verify-commits");
    if (verify && dir == NULL)
        return cli_usage_error("lint", "--verify-commits needs the repository's directory");
    struct stat sb;
    if (dir != NULL && (stat(dir, &sb) < 0 || !S_ISDIR(sb.st_mode)))
        return cli_usage_error("lint", "'%s' is not a directory", dir);
    if (config != NULL)
        lint_config(&st, config, which, nwhich);
    if (verify && verify_revision(&st, dir, revision ? revision : "HEAD", signers) < 0)
        st.failed = 1;
    if (dir != NULL)
        lint_dir(&st, dir, 0);
    fflush(stdout);
    fprintf(stderr, "almanac: %lu file(s) checked, %lu problem(s)\n", st.files, st.problems);
    return st.problems > 0 || st.failed ? CLI_EXIT_ERROR : CLI_EXIT_OK;
}
