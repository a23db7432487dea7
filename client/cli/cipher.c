/*
 * cipher — `almanac encrypt [TEXT]` and `almanac decrypt [TEXT]`: the server's encryption
 * service (POST /encrypt, /decrypt) through libalmanac. The text comes from the argument or,
 * better for secrets (arguments show in the process list), from standard input.
 */
#include "cli.h"

#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

enum { OPT_PREFIX = CLI_OPT_COMMAND_BASE };

#define CIPHER_MAX_INPUT (1u << 20)

static void help(const char *command)
{
    int enc = strcmp(command, "encrypt") == 0;
    printf("usage: almanac %s [TEXT] [options]\n\n", command);
    if (enc)
        printf("Encrypts TEXT (or standard input, without its final newline) with the server's\n"
               "key and prints the ciphertext, to be stored in a configuration file as\n"
               "'{cipher}CIPHERTEXT' (quoted in YAML, bare in .properties).\n\n"
               "  --prefix     print it with the {cipher} prefix\n\n");
    else
        printf("Decrypts TEXT (or standard input), with or without its {cipher} prefix, with\n"
               "the server's key and prints the plaintext.\n\n");
    printf("The server usually requires admin credentials for this. Exit code 2 also when the\n"
           "server cannot decrypt the text with its key, 3 when it has no key.\n\n%s",
           cli_common_help);
}

/* Standard input, at most CIPHER_MAX_INPUT bytes, without one trailing newline. */
static char *read_stdin(size_t *len)
{
    char *buf = malloc(CIPHER_MAX_INPUT + 1);
    if (buf == NULL)
        return NULL;
    size_t n = fread(buf, 1, CIPHER_MAX_INPUT + 1, stdin);
    if (n > CIPHER_MAX_INPUT || ferror(stdin)) {
        free(buf);
        return NULL;
    }
    if (n > 0 && buf[n - 1] == '\n')
        n--;
    if (n > 0 && buf[n - 1] == '\r')
        n--;
    buf[n] = '\0';
    *len = n;
    return buf;
}

static int run(int argc, char **argv, int enc)
{
    static const struct option options[] = {
        {"prefix", no_argument, NULL, OPT_PREFIX}, CLI_COMMON_LONG_OPTIONS, {NULL, 0, NULL, 0}};
    const char *command = enc ? "encrypt" : "decrypt";
    cli_common common;
    int prefix = 0, rc = CLI_EXIT_OK, opt;
    alm_client *client = NULL;
    alm_buf out = {NULL, 0};
    char *input = NULL;
    size_t len = 0;

    cli_common_init(&common);
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":", options, NULL)) != -1) {
        if (opt == CLI_OPT_HELP) {
            help(command);
            return CLI_EXIT_OK;
        }
        int handled = cli_common_option(&common, opt, optarg);
        if (handled < 0)
            return CLI_EXIT_USAGE;
        if (handled)
            continue;
        if (opt == OPT_PREFIX && enc)
            prefix = 1;
        else if (opt == ':')
            return cli_usage_error(command, "%s needs a value", argv[optind - 1]);
        else
            return cli_usage_error(command, "unknown option '%s'", argv[optind - 1]);
    }
    if (argc - optind > 1)
        return cli_usage_error(command, "expected at most one TEXT (or text on standard input)");
    if (argc - optind == 1) {
        input = strdup(argv[optind]);
        len = input != NULL ? strlen(input) : 0;
    } else {
        input = read_stdin(&len);
    }
    if (input == NULL) {
        fprintf(stderr, "almanac %s: cannot read the text (at most %u bytes)\n", command,
                CIPHER_MAX_INPUT);
        return CLI_EXIT_ERROR;
    }
    if (len == 0) {
        rc = cli_usage_error(command, "the text is empty");
        goto out;
    }
    /* The service takes no application; the client needs one, and never sends it here. */
    if ((rc = cli_client_new(&client, &common, "application", "default", 0)) != 0)
        goto out;
    int error = enc ? alm_client_encrypt(&out, client, input, len)
                    : alm_client_decrypt(&out, client, input, len);
    if (error < 0) {
        rc = cli_fail(error, NULL);
        goto out;
    }
    printf("%s%.*s\n", prefix ? "{cipher}" : "", (int)out.size, out.ptr);
    rc = fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_ERROR;
out:
    if (out.ptr != NULL)
        OPENSSL_cleanse(out.ptr, out.size);
    alm_buf_dispose(&out);
    if (input != NULL)
        OPENSSL_cleanse(input, len);
    free(input);
    alm_client_free(client);
    return rc;
}

int cli_cmd_encrypt(int argc, char **argv)
{
    return run(argc, argv, 1);
}

int cli_cmd_decrypt(int argc, char **argv)
{
    return run(argc, argv, 0);
}
