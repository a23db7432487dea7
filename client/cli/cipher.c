/*
 * cipher — `almanac encrypt [TEXT]` and `almanac decrypt [TEXT]`: the server's encryption
 * service (POST /encrypt, /decrypt) through libalmanac, or, given a key file, the same formats
 * computed here without any server (common/'s cipher_format, which the server's keyring uses
 * too, so either side reads what the other wrote). The text comes from the argument or, better
 * for secrets (arguments show in the process list), from standard input.
 *
 * Offline, this file owns deriving the keys and choosing one for a ciphertext by its shape;
 * key files are read by common/'s keyfile (as the server's keyring reads them), the formats
 * are cipher_format's. Key material is wiped
 * with OPENSSL_cleanse and never printed; error messages name files, never their contents.
 */
#include "cli.h"
#include "cipher_format.h"
#include "err.h"
#include "fileread.h"
#include "keyfile.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

enum { OPT_PREFIX = CLI_OPT_COMMAND_BASE, OPT_KEY_FILE, OPT_RSA_KEY_FILE, OPT_SALT, OPT_FORMAT };

#define CIPHER_MAX_INPUT (1u << 20)

/* What the command line asks for when it works without a server. */
typedef struct offline_opts {
    const char *key_file;     /* the symmetric secret */
    const char *rsa_key_file; /* PEM: private, or public for encrypt */
    const char *salt;         /* hex (or text), as the server's --encrypt-salt */
    bool spring;              /* encrypt in Spring's format rather than alm1 */
} offline_opts;

static void help(const char *command)
{
    int enc = strcmp(command, "encrypt") == 0;
    printf("usage: almanac %s [TEXT] [options]\n\n", command);
    if (enc)
        printf("Encrypts TEXT (or standard input, without its final newline) with the server's\n"
               "key, or offline with a key file, and prints the ciphertext, to be stored in a\n"
               "configuration file as '{cipher}CIPHERTEXT' (quoted in YAML, bare in\n"
               ".properties).\n\n"
               "  --prefix              print it with the {cipher} prefix\n");
    else
        printf("Decrypts TEXT (or standard input), with or without its {cipher} prefix, with\n"
               "the server's key, or offline with a key file, and prints the plaintext.\n\n");
    printf("Offline (no server is contacted when a key file is given):\n"
           "  --key-file FILE       the symmetric secret, as the server's --encrypt-key-file\n"
           "                        (final newlines ignored)\n"
           "  --rsa-key-file PEM    an RSA key (%s), as the server's\n"
           "                        --encrypt-rsa-key-file\n"
           "  --salt HEX            the salt of Spring's formats (default %s),\n"
           "                        as the server's --encrypt-salt\n",
           enc ? "public or private" : "private", CIPHER_SPRING_DEFAULT_SALT);
    if (enc)
        printf("  --format FORMAT       almanac (default: alm1:..., AES-256-GCM) or spring (what\n"
               "                        Spring Cloud Config reads); with both key files the\n"
               "                        symmetric one is used\n");
    else
        printf("\nThe format (almanac, Spring symmetric or RSA) is read from the text, and a\n"
               "{key:NAME} prefix is taken to name the key given.\n");
    printf("\nThrough a server, admin credentials are usually required. Exit code 2 also when\n"
           "the text cannot be decrypted with the key (wrong key, salt or damaged text),\n"
           "3 when the server has no key.\n\n%s",
           cli_common_help);
}

/* Standard input, at most CIPHER_MAX_INPUT bytes, without one trailing newline. */
static char *read_stdin(size_t *len)
{
    file_contents in = {0};
    if (file_read_stream(&in, stdin, "standard input", CIPHER_MAX_INPUT, FILE_READ_SECRET) < 0)
        return NULL;
    size_t n = in.len;
    if (n > 0 && in.data[n - 1] == '\n')
        n--;
    if (n > 0 && in.data[n - 1] == '\r')
        n--;
    in.data[n] = '\0';
    *len = n;
    return in.data;
}

/* keyfile's warnings, said the way every CLI warning is said. */
static void warn_to_stderr(void *ctx, const char *message)
{
    fprintf(stderr, "almanac %s: warning: %s\n", *(const char **)ctx, message);
}

/* The RSA key of a PEM file (keyfile.h): the private key, or for encryption a public one. */
static int load_rsa(EVP_PKEY **out, const char *command, const char *path, bool need_private)
{
    bool has_private = false;
    if (keyfile_load_rsa(out, &has_private, path, need_private, warn_to_stderr, &command) < 0) {
        fprintf(stderr, "almanac %s: %s\n", command, err_message());
        return CLI_EXIT_ERROR;
    }
    return CLI_EXIT_OK;
}

/* The secret of --key-file, final newlines dropped exactly as the server drops them. */
static int load_secret(char **secret, size_t *len, size_t *size, const char *command,
                       const char *path)
{
    if (keyfile_load_secret(secret, len, size, path, warn_to_stderr, &command) < 0) {
        fprintf(stderr, "almanac %s: %s\n", command, err_message());
        return CLI_EXIT_ERROR;
    }
    return CLI_EXIT_OK;
}

/* cipher_format's err_code as the CLI says it: with what to check, and the exit status. */
static int cipher_failed(const char *command, int error, bool enc)
{
    if (error == ERR_TOO_LARGE)
        fprintf(stderr, "almanac encrypt: the text is too large (at most %u bytes)\n",
                CIPHER_MAX_TEXT);
    else if (error == ERR_INVALID_CIPHER && !enc)
        fprintf(stderr, "almanac decrypt: the text was not encrypted with this key (or is "
                        "damaged); check the key file and --salt\n");
    else
        fprintf(stderr, "almanac %s: %s\n", command, err_message());
    return error == ERR_INVALID_CIPHER && !enc ? CLI_EXIT_USAGE : CLI_EXIT_ERROR;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/*
 * Encrypts or decrypts input with the keys of `o`, the way the server's keyring does with the
 * same files: on success *out is the result (wiped and freed by the caller with
 * cipher_free_secret). Returns an exit code after printing the error.
 */
static int run_offline(char **out, size_t *out_len, const offline_opts *o, bool enc,
                       const char *input, size_t len)
{
    const char *command = enc ? "encrypt" : "decrypt";
    unsigned char key[CIPHER_KEY_LEN];
    unsigned char *salt = NULL;
    size_t salt_len = 0, secret_len = 0, secret_size = 0;
    char *secret = NULL;
    EVP_PKEY *pkey = NULL;
    cipher_kind kind = CIPHER_KIND_UNKNOWN;
    cipher_prefix prefix = {0};
    int rc = CLI_EXIT_ERROR, error;

    *out = NULL;
    *out_len = 0;
    error = cipher_salt_decode(o->salt != NULL ? o->salt : CIPHER_SPRING_DEFAULT_SALT, &salt,
                               &salt_len);
    if (error < 0) {
        rc = error == ERR_NOMEM ? cipher_failed(command, error, enc)
                                : cli_usage_error(command, "--salt is empty or too long");
        goto out;
    }
    if (!enc) {
        /* Ciphertexts hold no whitespace: what surrounds one came from a file or a terminal. */
        while (len > 0 && is_space(input[0])) {
            input++;
            len--;
        }
        while (len > 0 && is_space(input[len - 1]))
            len--;
        if (len >= 8 && memcmp(input, "{cipher}", 8) == 0) {
            input += 8;
            len -= 8;
        }
        if (len > CIPHER_MAX_TEXT || cipher_parse_prefixes(input, len, &prefix) < 0 ||
            (kind = cipher_detect(prefix.body, prefix.body_len)) == CIPHER_KIND_UNKNOWN) {
            rc = cipher_failed(command, ERR_INVALID_CIPHER, enc);
            goto out;
        }
        if (kind == CIPHER_KIND_SPRING_RSA && o->rsa_key_file == NULL) {
            rc = cli_usage_error(command, "this is an RSA ciphertext: give the private key "
                                          "with --rsa-key-file");
            goto out;
        }
        if (kind != CIPHER_KIND_SPRING_RSA && o->key_file == NULL) {
            rc = cli_usage_error(command, "this is a symmetric ciphertext: give the secret "
                                          "with --key-file");
            goto out;
        }
    } else {
        /* As the server's keyring: the symmetric key first when there are both. */
        kind = o->key_file == NULL ? CIPHER_KIND_SPRING_RSA
               : o->spring         ? CIPHER_KIND_SPRING_SYMMETRIC
                                   : CIPHER_KIND_ALMANAC;
    }
    if (kind == CIPHER_KIND_SPRING_RSA)
        rc = load_rsa(&pkey, command, o->rsa_key_file, !enc);
    else
        rc = load_secret(&secret, &secret_len, &secret_size, command, o->key_file);
    if (rc != CLI_EXIT_OK)
        goto out;

    const unsigned char *bytes = (const unsigned char *)input;
    switch (kind) {
    case CIPHER_KIND_ALMANAC:
        error = cipher_almanac_derive(key, secret, secret_len);
        if (error == 0)
            error = enc ? cipher_almanac_encrypt(key, bytes, len, out)
                        : cipher_almanac_decrypt(key, prefix.body, prefix.body_len, out, out_len);
        break;
    case CIPHER_KIND_SPRING_SYMMETRIC:
        error = cipher_spring_derive(key, secret, secret_len, salt, salt_len);
        if (error == 0)
            error = enc ? cipher_spring_encrypt(key, bytes, len, out)
                        : cipher_spring_decrypt(key, prefix.body, prefix.body_len, out, out_len);
        break;
    default:
        if (enc)
            error = o->spring ? cipher_spring_rsa_encrypt(pkey, CIPHER_RSA_PKCS1, CIPHER_AES_CBC,
                                                          salt, salt_len, bytes, len, out)
                              : cipher_spring_rsa_encrypt(pkey, CIPHER_RSA_OAEP, CIPHER_AES_GCM,
                                                          salt, salt_len, bytes, len, out);
        else
            error = cipher_spring_rsa_decrypt(pkey, salt, salt_len, prefix.body, prefix.body_len,
                                              out, out_len);
        break;
    }
    if (error == 0 && enc)
        *out_len = strlen(*out);
    rc = error == 0 ? CLI_EXIT_OK : cipher_failed(command, error, enc);
out:
    OPENSSL_cleanse(key, sizeof(key));
    cipher_free_secret(secret, secret_size);
    EVP_PKEY_free(pkey);
    ERR_clear_error();
    free(salt);
    return rc;
}

typedef struct cipher_options {
    int enc;
    const char *command;
    offline_opts offline;
    int prefix, format_given;
} cipher_options;

static int cipher_option(void *ctx, int opt, const char *arg)
{
    cipher_options *o = ctx;
    if (opt == OPT_PREFIX && o->enc) {
        o->prefix = 1;
    } else if (opt == OPT_KEY_FILE) {
        o->offline.key_file = arg;
    } else if (opt == OPT_RSA_KEY_FILE) {
        o->offline.rsa_key_file = arg;
    } else if (opt == OPT_SALT) {
        o->offline.salt = arg;
    } else if (opt == OPT_FORMAT && o->enc) {
        if (strcmp(arg, "spring") != 0 && strcmp(arg, "almanac") != 0)
            return cli_usage_error(o->command, "--format: expected almanac or spring");
        o->offline.spring = strcmp(arg, "spring") == 0;
        o->format_given = 1;
    } else if (opt == OPT_FORMAT) {
        return cli_usage_error(o->command, "--format is for encrypt: decrypt reads the format "
                                           "from the text");
    } else {
        return CLI_OPTION_UNKNOWN;
    }
    return CLI_OPTION_TAKEN;
}

static const struct option cipher_flags[] = {
    {"prefix", no_argument, NULL, OPT_PREFIX},
    {"key-file", required_argument, NULL, OPT_KEY_FILE},
    {"rsa-key-file", required_argument, NULL, OPT_RSA_KEY_FILE},
    {"salt", required_argument, NULL, OPT_SALT},
    {"format", required_argument, NULL, OPT_FORMAT},
    {NULL, 0, NULL, 0}};

static int run(int argc, char **argv, int enc)
{
    const char *command = enc ? "encrypt" : "decrypt";
    cli_common common;
    cipher_options o = {.enc = enc, .command = command};
    int rc;
    alm_client *client = NULL;
    alm_buf out = {NULL, 0};
    char *input = NULL, *result = NULL;
    size_t len = 0, result_len = 0;

    cli_command cmd = {command, cipher_flags, cipher_option, &o, help};
    if ((rc = cli_parse_options(&cmd, &common, argc, argv)) >= 0)
        return rc;
    rc = CLI_EXIT_OK;
    offline_opts offline = o.offline;
    int prefix = o.prefix, format_given = o.format_given;
    bool local = offline.key_file != NULL || offline.rsa_key_file != NULL;
    /* The server's own --encrypt-salt and --encrypt-format apply there: silently ignoring
     * them here would hand back a ciphertext in a format the user did not ask for. */
    if (!local && (offline.salt != NULL || format_given))
        return cli_usage_error(command, "--salt and --format need --key-file or --rsa-key-file "
                                        "(the server uses its own settings)");
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
    if (local) {
        if ((rc = run_offline(&result, &result_len, &offline, enc, input, len)) != CLI_EXIT_OK)
            goto out;
        printf("%s%.*s\n", prefix ? "{cipher}" : "", (int)result_len, result);
        rc = fflush(stdout) == 0 ? CLI_EXIT_OK : CLI_EXIT_ERROR;
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
    cipher_free_secret(result, result_len);
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
