/*
 * sshsig — see sshsig.h. The formats are OpenSSH's: PROTOCOL.sshsig for the signature,
 * PROTOCOL.key / RFC 4253 §6.6 / RFC 5656 §3.1 / RFC 8709 for the keys and signature blobs,
 * sshkey(5)-style lines for allowed signers (ssh-keygen(1), ALLOWED SIGNERS).
 */
#include "sshsig.h"

#include "cipher_format.h"
#include "err.h"
#include "fileread.h"
#include "log.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

#include <ctype.h>
#include <fnmatch.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define MODULE "sshsig"
#define MAGIC "SSHSIG"
#define MAGIC_LEN 6
#define BEGIN_LINE "-----BEGIN SSH SIGNATURE-----"
#define END_LINE "-----END SSH SIGNATURE-----"
#define MAX_LINES 100000
#define RSA_MIN_BITS 1024 /* ssh-keygen's own floor (SSH_RSA_MINIMUM_MODULUS_SIZE) */

typedef enum { KEY_ED25519, KEY_ECDSA_P256, KEY_RSA } key_kind;

typedef struct signer {
    char *principals;
    char *namespaces; /* NULL: any namespace */
    int64_t valid_after, valid_before; /* 0: no bound */
    key_kind kind;
    unsigned char *blob; /* the public key as SSH wire bytes, compared with the signature's */
    size_t blob_len;
    EVP_PKEY *pkey;
} signer;

struct allowed_signers {
    signer *list;
    size_t count;
};

/* ---- SSH wire format ------------------------------------------------------------------------ */

typedef struct reader {
    const unsigned char *p;
    size_t left;
} reader;

static bool read_u32(reader *r, uint32_t *v)
{
    if (r->left < 4)
        return false;
    *v = (uint32_t)r->p[0] << 24 | (uint32_t)r->p[1] << 16 | (uint32_t)r->p[2] << 8 | r->p[3];
    r->p += 4;
    r->left -= 4;
    return true;
}

static bool read_string(reader *r, const unsigned char **s, size_t *len)
{
    uint32_t n;
    if (!read_u32(r, &n) || n > r->left)
        return false;
    *s = r->p;
    *len = n;
    r->p += n;
    r->left -= n;
    return true;
}

static bool string_is(const unsigned char *s, size_t len, const char *text)
{
    return len == strlen(text) && memcmp(s, text, len) == 0;
}

static bool read_name(reader *r, const char *expected)
{
    const unsigned char *s;
    size_t len;
    return read_string(r, &s, &len) && string_is(s, len, expected);
}

/* An unsigned mpint: no sign bit set, leading zero only to clear it. */
static BIGNUM *read_mpint(reader *r)
{
    const unsigned char *s;
    size_t len;
    if (!read_string(r, &s, &len) || len == 0 || len > 2049 || (s[0] & 0x80))
        return NULL;
    return BN_bin2bn(s, (int)len, NULL);
}

static void put_u32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* ---- keys ----------------------------------------------------------------------------------- */

static EVP_PKEY *from_params(const char *type, OSSL_PARAM_BLD *bld)
{
    EVP_PKEY *pkey = NULL;
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    if (params == NULL || ctx == NULL || EVP_PKEY_fromdata_init(ctx) <= 0 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0) {
        EVP_PKEY_free(pkey);
        pkey = NULL;
    }
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    return pkey;
}

/* The key of an SSH public key blob of type type_name; NULL with *why. */
static EVP_PKEY *key_from_blob(const unsigned char *blob, size_t len, key_kind *kind,
                               const char **why)
{
    reader r = {blob, len};
    const unsigned char *type, *s;
    size_t type_len, n;
    EVP_PKEY *pkey = NULL;

    *why = "malformed public key";
    if (!read_string(&r, &type, &type_len))
        return NULL;
    if (string_is(type, type_len, "ssh-ed25519")) {
        if (!read_string(&r, &s, &n) || n != 32 || r.left != 0)
            return NULL;
        *kind = KEY_ED25519;
        if ((pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, s, n)) == NULL)
            *why = "OpenSSL refused the Ed25519 key";
        return pkey;
    }
    if (string_is(type, type_len, "ecdsa-sha2-nistp256")) {
        OSSL_PARAM_BLD *bld = NULL;
        EVP_PKEY_CTX *check = NULL;
        if (!read_name(&r, "nistp256") || !read_string(&r, &s, &n) || n != 65 || s[0] != 0x04 ||
            r.left != 0)
            return NULL;
        *kind = KEY_ECDSA_P256;
        if ((bld = OSSL_PARAM_BLD_new()) == NULL ||
            !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) ||
            !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, s, n) ||
            (pkey = from_params("EC", bld)) == NULL) {
            *why = "OpenSSL refused the P-256 key";
        } else if ((check = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL)) == NULL ||
                   EVP_PKEY_public_check(check) != 1) {
            *why = "the P-256 point is not on the curve";
            EVP_PKEY_free(pkey);
            pkey = NULL;
        }
        EVP_PKEY_CTX_free(check);
        OSSL_PARAM_BLD_free(bld);
        return pkey;
    }
    if (string_is(type, type_len, "ssh-rsa")) {
        BIGNUM *e = read_mpint(&r), *mod = e ? read_mpint(&r) : NULL;
        OSSL_PARAM_BLD *bld = NULL;
        *kind = KEY_RSA;
        if (e == NULL || mod == NULL || r.left != 0) {
            /* *why stays "malformed" */
        } else if (BN_num_bits(mod) < RSA_MIN_BITS || BN_num_bits(mod) > 16384) {
            *why = "an RSA key must have 1024 to 16384 bits";
        } else if ((bld = OSSL_PARAM_BLD_new()) == NULL ||
                   !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, mod) ||
                   !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) ||
                   (pkey = from_params("RSA", bld)) == NULL) {
            *why = "OpenSSL refused the RSA key";
        }
        OSSL_PARAM_BLD_free(bld);
        BN_free(e);
        BN_free(mod);
        return pkey;
    }
    *why = "unsupported key type (Ed25519, ECDSA P-256 and RSA are)";
    return NULL;
}

/* "SHA256:..." as ssh-keygen -l prints it, for messages that must name a key. */
static void fingerprint(const unsigned char *blob, size_t len, char *out, size_t size)
{
    unsigned char digest[32];
    unsigned char text[48];
    unsigned int dlen = 0;
    if (EVP_Digest(blob, len, digest, &dlen, EVP_sha256(), NULL) != 1 || dlen != 32) {
        snprintf(out, size, "SHA256:?");
        return;
    }
    int n = EVP_EncodeBlock(text, digest, (int)dlen);
    while (n > 0 && text[n - 1] == '=')
        n--;
    snprintf(out, size, "SHA256:%.*s", n, (const char *)text);
}

static const char *key_type_name(const unsigned char *blob, size_t len, char *buf, size_t size)
{
    reader r = {blob, len};
    const unsigned char *type;
    size_t type_len;
    if (!read_string(&r, &type, &type_len) || type_len > 64)
        return "unknown";
    for (size_t i = 0; i < type_len; i++)
        if (!isprint(type[i]))
            return "unknown";
    snprintf(buf, size, "%.*s", (int)type_len, (const char *)type);
    return buf;
}

/* ---- allowed signers file ------------------------------------------------------------------- */

static void signer_clear(signer *s)
{
    free(s->principals);
    free(s->namespaces);
    free(s->blob);
    EVP_PKEY_free(s->pkey);
}

void allowed_signers_free(allowed_signers *signers)
{
    if (signers == NULL)
        return;
    for (size_t i = 0; i < signers->count; i++)
        signer_clear(&signers->list[i]);
    free(signers->list);
    free(signers);
}

size_t allowed_signers_count(const allowed_signers *signers)
{
    return signers ? signers->count : 0;
}

/* The next whitespace-delimited token of *p; double quotes keep spaces inside. NULL at the end. */
static char *next_token(char **p)
{
    char *s = *p, *start;
    bool quoted = false;
    while (*s == ' ' || *s == '\t')
        s++;
    if (*s == '\0')
        return NULL;
    start = s;
    for (; *s; s++) {
        if (*s == '"')
            quoted = !quoted;
        else if (!quoted && (*s == ' ' || *s == '\t'))
            break;
    }
    if (*s)
        *s++ = '\0';
    *p = s;
    return start;
}

static char *dequote(char *s)
{
    size_t n = strlen(s);
    if (n >= 2 && s[0] == '"' && s[n - 1] == '"') {
        s[n - 1] = '\0';
        return s + 1;
    }
    return s;
}

/* YYYYMMDD[HHMM[SS]][Z]: UTC with Z, local time without, as ssh-keygen reads it. */
static bool parse_time(const char *text, int64_t *out)
{
    struct tm tm;
    size_t n = strlen(text);
    bool utc = n > 0 && (text[n - 1] == 'Z' || text[n - 1] == 'z');
    int v[6] = {0, 0, 0, 0, 0, 0};
    if (utc)
        n--;
    if (n != 8 && n != 12 && n != 14)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)text[i]))
            return false;
    static const int widths[] = {4, 2, 2, 2, 2, 2};
    size_t pos = 0;
    for (int i = 0; i < 6 && pos < n; i++) {
        for (int k = 0; k < widths[i]; k++)
            v[i] = v[i] * 10 + (text[pos++] - '0');
    }
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = v[0] - 1900;
    tm.tm_mon = v[1] - 1;
    tm.tm_mday = v[2];
    tm.tm_hour = v[3];
    tm.tm_min = v[4];
    tm.tm_sec = v[5];
    tm.tm_isdst = -1;
    if (v[1] < 1 || v[1] > 12 || v[2] < 1 || v[2] > 31 || v[3] > 23 || v[4] > 59 || v[5] > 59)
        return false;
    time_t t = utc ? timegm(&tm) : mktime(&tm);
    if (t == (time_t)-1)
        return false;
    *out = (int64_t)t;
    return true;
}

static bool is_option_list(const char *token)
{
    static const char *const names[] = {"cert-authority", "namespaces=", "valid-after=",
                                        "valid-before="};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strncasecmp(token, names[i], strlen(names[i])) == 0)
            return true;
    return false;
}

/* Key types ssh-keygen knows and this verifier does not: their lines are skipped, not fatal. */
static bool is_unsupported_key_type(const char *type)
{
    static const char *const types[] = {"ssh-dss", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
                                        "sk-ssh-ed25519@openssh.com",
                                        "sk-ecdsa-sha2-nistp256@openssh.com", "ssh-xmss@openssh.com"};
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        if (strcmp(type, types[i]) == 0)
            return true;
    return strstr(type, "-cert-v01@openssh.com") != NULL;
}

/* 0 done, 1 skip this line (logged), <0 error (set). */
static int parse_options(char *opts, signer *s, const char *where)
{
    char *p = opts;
    while (*p) {
        char *start = p;
        bool quoted = false;
        for (; *p; p++) {
            if (*p == '"')
                quoted = !quoted;
            else if (*p == ',' && !quoted)
                break;
        }
        if (quoted)
            return err_set(ERR_CONFIG, "%s: unterminated quote in options", where);
        if (*p)
            *p++ = '\0';
        char *eq = strchr(start, '=');
        char *value = eq ? dequote(eq + 1) : NULL;
        if (eq)
            *eq = '\0';
        if (strcasecmp(start, "cert-authority") == 0 && !eq) {
            LOG_WARN(MODULE, "%s: skipped: cert-authority lines are not supported (commits "
                             "signed with SSH certificates are refused)", where);
            return 1;
        } else if (strcasecmp(start, "namespaces") == 0 && value) {
            free(s->namespaces);
            if ((s->namespaces = strdup(value)) == NULL)
                return err_set(ERR_NOMEM, "out of memory");
        } else if (strcasecmp(start, "valid-after") == 0 && value) {
            if (!parse_time(value, &s->valid_after))
                return err_set(ERR_CONFIG, "%s: valid-after \"%s\" is not YYYYMMDD[HHMM[SS]][Z]",
                               where, value);
        } else if (strcasecmp(start, "valid-before") == 0 && value) {
            if (!parse_time(value, &s->valid_before))
                return err_set(ERR_CONFIG,
                               "%s: valid-before \"%s\" is not YYYYMMDD[HHMM[SS]][Z]", where,
                               value);
        } else {
            return err_set(ERR_CONFIG, "%s: unknown option \"%s\"", where, start);
        }
    }
    return 0;
}

/* 0 with *s filled, 1 nothing to keep (blank, comment, skipped), <0 error. */
static int parse_line(char *line, signer *s, const char *where)
{
    char *p = line, *principals, *token, *type, *b64;
    unsigned char *blob = NULL;
    size_t blob_len = 0;
    const char *why;
    int rc;

    while (*p == ' ' || *p == '\t')
        p++;
    if (*p == '\0' || *p == '#')
        return 1;
    principals = dequote(next_token(&p));
    if (*principals == '\0')
        return err_set(ERR_CONFIG, "%s: no principals", where);
    if ((token = next_token(&p)) == NULL)
        return err_set(ERR_CONFIG, "%s: no key", where);
    if (is_option_list(token)) {
        if ((rc = parse_options(token, s, where)) != 0)
            return rc;
        if ((token = next_token(&p)) == NULL)
            return err_set(ERR_CONFIG, "%s: no key after the options", where);
    }
    type = token;
    if (is_unsupported_key_type(type)) {
        LOG_WARN(MODULE, "%s: skipped: key type %s is not supported (Ed25519, ECDSA P-256 and "
                         "RSA are)", where, type);
        return 1;
    }
    if (strcmp(type, "ssh-ed25519") != 0 && strcmp(type, "ecdsa-sha2-nistp256") != 0 &&
        strcmp(type, "ssh-rsa") != 0)
        return err_set(ERR_CONFIG, "%s: \"%.64s\" is neither an option list nor a key type", where,
                       type);
    if ((b64 = next_token(&p)) == NULL)
        return err_set(ERR_CONFIG, "%s: no base64 key after %s", where, type);
    if (cipher_base64_decode(b64, strlen(b64), &blob, &blob_len) != 0)
        return err_set(ERR_CONFIG, "%s: the %s key is not base64", where, type);
    s->blob = blob;
    s->blob_len = blob_len;
    reader r = {blob, blob_len};
    if (!read_name(&r, type))
        return err_set(ERR_CONFIG, "%s: the key is not of type %s", where, type);
    if ((s->pkey = key_from_blob(blob, blob_len, &s->kind, &why)) == NULL)
        return err_set(ERR_CONFIG, "%s: %s", where, why);
    if ((s->principals = strdup(principals)) == NULL)
        return err_set(ERR_NOMEM, "out of memory");
    return 0;
}

int allowed_signers_parse(allowed_signers **out, const char *text, size_t len, const char *name)
{
    allowed_signers *set = calloc(1, sizeof(*set));
    char *copy = NULL, *line, *next;
    size_t capacity = 0;
    unsigned lineno = 0;
    int error = 0;

    *out = NULL;
    if (set == NULL || (copy = malloc(len + 1)) == NULL) {
        error = err_set(ERR_NOMEM, "out of memory");
        goto out;
    }
    memcpy(copy, text, len);
    copy[len] = '\0';
    if (memchr(text, '\0', len) != NULL) {
        error = err_set(ERR_CONFIG, "%s: contains a NUL byte", name);
        goto out;
    }
    for (line = copy; line != NULL; line = next) {
        char where[300];
        signer s;
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        size_t n = strlen(line);
        if (n > 0 && line[n - 1] == '\r')
            line[n - 1] = '\0';
        if (++lineno > MAX_LINES) {
            error = err_set(ERR_CONFIG, "%s: more than %d lines", name, MAX_LINES);
            goto out;
        }
        snprintf(where, sizeof(where), "%s:%u", name, lineno);
        memset(&s, 0, sizeof(s));
        int rc = parse_line(line, &s, where);
        if (rc != 0) {
            signer_clear(&s);
            if (rc < 0) {
                error = rc;
                goto out;
            }
            continue;
        }
        if (set->count == capacity) {
            size_t grown = capacity ? capacity * 2 : 8;
            signer *list = realloc(set->list, grown * sizeof(*list));
            if (list == NULL) {
                signer_clear(&s);
                error = err_set(ERR_NOMEM, "out of memory");
                goto out;
            }
            set->list = list;
            capacity = grown;
        }
        set->list[set->count++] = s;
    }
    if (set->count == 0) {
        error = err_set(ERR_CONFIG, "%s: no usable key (every commit would be refused)", name);
        goto out;
    }
    *out = set;
    set = NULL;
out:
    free(copy);
    allowed_signers_free(set);
    return error;
}

int allowed_signers_load(allowed_signers **out, const char *path)
{
    file_contents file = {0};
    *out = NULL;
    if (file_read(&file, path, ALLOWED_SIGNERS_MAX_BYTES, FILE_READ_REGULAR_ONLY) < 0)
        return err_set(ERR_CONFIG, "cannot read the allowed signers file: %s", err_message());
    int error = allowed_signers_parse(out, file.data, file.len, path);
    file_contents_dispose(&file);
    return error;
}

/* ---- signatures ----------------------------------------------------------------------------- */

/* The SSHSIG blob inside the armor; ERR_FORBIDDEN when it is not one. */
static int unarmor(const char *armored, size_t len, unsigned char **blob, size_t *blob_len)
{
    const char *begin, *end, *body;
    char *b64;
    size_t n = 0;

    *blob = NULL;
    if (len > SSHSIG_MAX_ARMORED)
        return err_set(ERR_FORBIDDEN, "the signature is larger than %d bytes", SSHSIG_MAX_ARMORED);
    begin = memmem(armored, len, BEGIN_LINE, strlen(BEGIN_LINE));
    if (begin == NULL) {
        if (memmem(armored, len, "-----BEGIN PGP SIGNATURE-----", 29) != NULL)
            return err_set(ERR_FORBIDDEN, "signed with OpenPGP, not SSH (only SSH signatures, "
                                          "gpg.format=ssh, are verified)");
        if (memmem(armored, len, "-----BEGIN SIGNED MESSAGE-----", 30) != NULL)
            return err_set(ERR_FORBIDDEN, "signed with X.509, not SSH (only SSH signatures, "
                                          "gpg.format=ssh, are verified)");
        return err_set(ERR_FORBIDDEN, "the signature is not an armored SSH signature");
    }
    body = begin + strlen(BEGIN_LINE);
    end = memmem(body, len - (size_t)(body - armored), END_LINE, strlen(END_LINE));
    if (end == NULL)
        return err_set(ERR_FORBIDDEN, "the SSH signature has no end line");
    if ((b64 = malloc((size_t)(end - body) + 1)) == NULL)
        return err_set(ERR_NOMEM, "out of memory");
    for (const char *p = body; p < end; p++) {
        if (*p == '\n' || *p == '\r' || *p == ' ' || *p == '\t')
            continue;
        b64[n++] = *p;
    }
    b64[n] = '\0';
    int rc = n ? cipher_base64_decode(b64, n, blob, blob_len) : ERR_INVALID_CIPHER;
    free(b64);
    if (rc == ERR_NOMEM)
        return rc;
    if (rc != 0)
        return err_set(ERR_FORBIDDEN, "the SSH signature is not base64");
    return 0;
}

typedef struct sshsig {
    const unsigned char *key, *ns, *reserved, *hash, *sig;
    size_t key_len, ns_len, reserved_len, hash_len, sig_len;
} sshsig;

static int parse_sshsig(const unsigned char *blob, size_t len, sshsig *out)
{
    reader r = {blob, len};
    uint32_t version;
    if (len < MAGIC_LEN || memcmp(blob, MAGIC, MAGIC_LEN) != 0)
        return err_set(ERR_FORBIDDEN, "malformed SSH signature: no SSHSIG preamble");
    r.p += MAGIC_LEN;
    r.left -= MAGIC_LEN;
    if (!read_u32(&r, &version))
        return err_set(ERR_FORBIDDEN, "malformed SSH signature: truncated");
    if (version != 1)
        return err_set(ERR_FORBIDDEN, "SSH signature version %u is not supported", version);
    if (!read_string(&r, &out->key, &out->key_len) || !read_string(&r, &out->ns, &out->ns_len) ||
        !read_string(&r, &out->reserved, &out->reserved_len) ||
        !read_string(&r, &out->hash, &out->hash_len) ||
        !read_string(&r, &out->sig, &out->sig_len))
        return err_set(ERR_FORBIDDEN, "malformed SSH signature: truncated");
    if (r.left != 0)
        return err_set(ERR_FORBIDDEN, "malformed SSH signature: trailing bytes");
    return 0;
}

/* fnmatch patterns separated by commas, "!" negating, as OpenSSH's match_pattern_list. */
static bool pattern_list_matches(const char *list, const char *name)
{
    bool matched = false;
    char item[256];
    const char *p = list;
    while (*p) {
        size_t n = strcspn(p, ",");
        if (n < sizeof(item)) {
            memcpy(item, p, n);
            item[n] = '\0';
            bool negated = item[0] == '!';
            if (fnmatch(negated ? item + 1 : item, name, 0) == 0) {
                if (negated)
                    return false;
                matched = true;
            }
        }
        p += n;
        if (*p == ',')
            p++;
    }
    return matched;
}

static void format_time(int64_t t, char *out, size_t size)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (gmtime_r(&tt, &tm) == NULL || strftime(out, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, size, "%lld", (long long)t);
}

/* 0 verified; ERR_FORBIDDEN not (with the reason), ERR_NOMEM. */
static int check_signature(const signer *s, const unsigned char *sig_blob, size_t sig_len,
                           const unsigned char *msg, size_t msg_len)
{
    reader r = {sig_blob, sig_len};
    const unsigned char *type, *sig;
    size_t type_len, n;
    const EVP_MD *md = NULL;
    unsigned char *der = NULL, *padded = NULL;
    ECDSA_SIG *ecdsa = NULL;
    EVP_MD_CTX *ctx = NULL;
    int error = 0;

    if (!read_string(&r, &type, &type_len) || !read_string(&r, &sig, &n) || r.left != 0)
        return err_set(ERR_FORBIDDEN, "malformed SSH signature: bad signature blob");
    switch (s->kind) {
    case KEY_ED25519:
        if (!string_is(type, type_len, "ssh-ed25519") || n != 64)
            return err_set(ERR_FORBIDDEN, "malformed Ed25519 signature");
        break;
    case KEY_ECDSA_P256: {
        reader inner = {sig, n};
        BIGNUM *br = NULL, *bs = NULL;
        int der_len;
        if (!string_is(type, type_len, "ecdsa-sha2-nistp256") || (br = read_mpint(&inner)) == NULL ||
            (bs = read_mpint(&inner)) == NULL || inner.left != 0 ||
            (ecdsa = ECDSA_SIG_new()) == NULL || !ECDSA_SIG_set0(ecdsa, br, bs)) {
            BN_free(br);
            BN_free(bs);
            error = err_set(ERR_FORBIDDEN, "malformed ECDSA signature");
            goto out;
        }
        if ((der_len = i2d_ECDSA_SIG(ecdsa, &der)) <= 0) {
            error = err_set(ERR_FORBIDDEN, "malformed ECDSA signature");
            goto out;
        }
        sig = der;
        n = (size_t)der_len;
        md = EVP_sha256();
        break;
    }
    case KEY_RSA: {
        size_t modulus = (size_t)EVP_PKEY_get_size(s->pkey);
        if (string_is(type, type_len, "rsa-sha2-512"))
            md = EVP_sha512();
        else if (string_is(type, type_len, "rsa-sha2-256"))
            md = EVP_sha256();
        else if (string_is(type, type_len, "ssh-rsa"))
            return err_set(ERR_FORBIDDEN, "RSA signature with SHA-1 (ssh-rsa) refused");
        else
            return err_set(ERR_FORBIDDEN, "malformed RSA signature");
        if (n == 0 || n > modulus)
            return err_set(ERR_FORBIDDEN, "malformed RSA signature");
        if (n < modulus) { /* OpenSSH accepts a signature with its leading zero bytes dropped */
            if ((padded = calloc(1, modulus)) == NULL)
                return err_set(ERR_NOMEM, "out of memory");
            memcpy(padded + (modulus - n), sig, n);
            sig = padded;
            n = modulus;
        }
        break;
    }
    }
    if ((ctx = EVP_MD_CTX_new()) == NULL) {
        error = err_set(ERR_NOMEM, "out of memory");
        goto out;
    }
    if (EVP_DigestVerifyInit(ctx, NULL, md, NULL, s->pkey) != 1 ||
        EVP_DigestVerify(ctx, sig, n, msg, msg_len) != 1)
        error = err_set(ERR_FORBIDDEN, "bad signature: the commit was changed after it was "
                                       "signed, or the signature is forged");
out:
    EVP_MD_CTX_free(ctx);
    ECDSA_SIG_free(ecdsa);
    OPENSSL_free(der);
    free(padded);
    return error;
}

int sshsig_verify(const allowed_signers *signers, const char *armored, size_t armored_len,
                  const void *data, size_t data_len, const char *namespace, int64_t when,
                  char *principal, size_t principal_size)
{
    unsigned char *blob = NULL, *msg = NULL;
    size_t blob_len = 0;
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_len = 0;
    const EVP_MD *md;
    sshsig sig;
    const signer *key_match = NULL;
    char refusal[256] = "";
    int error;

    if (principal && principal_size)
        principal[0] = '\0';
    if ((error = unarmor(armored, armored_len, &blob, &blob_len)) < 0)
        return error;
    if ((error = parse_sshsig(blob, blob_len, &sig)) < 0)
        goto out;
    if (!string_is(sig.ns, sig.ns_len, namespace)) {
        error = err_set(ERR_FORBIDDEN, "signed for namespace \"%.*s\", not \"%s\"",
                        (int)(sig.ns_len > 64 ? 64 : sig.ns_len), (const char *)sig.ns, namespace);
        goto out;
    }
    if (string_is(sig.hash, sig.hash_len, "sha512"))
        md = EVP_sha512();
    else if (string_is(sig.hash, sig.hash_len, "sha256"))
        md = EVP_sha256();
    else {
        error = err_set(ERR_FORBIDDEN, "SSH signature hash is neither sha256 nor sha512");
        goto out;
    }

    /* The signed message: PROTOCOL.sshsig's preamble, namespace, reserved, hash name, H(data). */
    if (EVP_Digest(data, data_len, digest, &digest_len, md, NULL) != 1) {
        error = err_set(ERR_INTERNAL, "cannot hash the signed data");
        goto out;
    }
    size_t msg_len = MAGIC_LEN + 4 + sig.ns_len + 4 + sig.reserved_len + 4 + sig.hash_len + 4 +
                     digest_len;
    if ((msg = malloc(msg_len)) == NULL) {
        error = err_set(ERR_NOMEM, "out of memory");
        goto out;
    }
    unsigned char *p = msg;
    memcpy(p, MAGIC, MAGIC_LEN);
    p += MAGIC_LEN;
    const unsigned char *parts[] = {sig.ns, sig.reserved, sig.hash, digest};
    const size_t lens[] = {sig.ns_len, sig.reserved_len, sig.hash_len, digest_len};
    for (size_t i = 0; i < 4; i++) {
        put_u32(p, (uint32_t)lens[i]);
        memcpy(p + 4, parts[i], lens[i]);
        p += 4 + lens[i];
    }

    /* Each line holding the key is a separate grant (other namespaces, other times): the first
     * that admits this signature decides; if none does, the last refusal is the reason. */
    for (size_t i = 0; signers && i < signers->count; i++) {
        const signer *s = &signers->list[i];
        char when_text[32], bound[32];
        if (s->blob_len != sig.key_len || memcmp(s->blob, sig.key, sig.key_len) != 0)
            continue;
        key_match = s;
        if (s->namespaces && !pattern_list_matches(s->namespaces, namespace)) {
            snprintf(refusal, sizeof(refusal),
                     "the key of %.80s is allowed for namespaces \"%.60s\" only, not \"%s\"",
                     s->principals, s->namespaces, namespace);
            continue;
        }
        if (s->valid_after && when < s->valid_after) {
            format_time(when, when_text, sizeof(when_text));
            format_time(s->valid_after, bound, sizeof(bound));
            snprintf(refusal, sizeof(refusal),
                     "the key of %.80s is valid only after %s (commit time %s)", s->principals,
                     bound, when_text);
            continue;
        }
        if (s->valid_before && when > s->valid_before) {
            format_time(when, when_text, sizeof(when_text));
            format_time(s->valid_before, bound, sizeof(bound));
            snprintf(refusal, sizeof(refusal),
                     "the key of %.80s is valid only before %s (commit time %s)", s->principals,
                     bound, when_text);
            continue;
        }
        if ((error = check_signature(s, sig.sig, sig.sig_len, msg, msg_len)) < 0)
            goto out;
        if (principal && principal_size)
            snprintf(principal, principal_size, "%s", s->principals);
        error = 0;
        goto out;
    }
    if (key_match != NULL) {
        error = err_set(ERR_FORBIDDEN, "%s", refusal);
    } else {
        char fp[64], type_buf[72];
        fingerprint(sig.key, sig.key_len, fp, sizeof(fp));
        error = err_set(ERR_FORBIDDEN, "signed by a key not in the allowed signers file (%s %s)",
                        key_type_name(sig.key, sig.key_len, type_buf, sizeof(type_buf)), fp);
    }
out:
    free(msg);
    free(blob);
    return error;
}
