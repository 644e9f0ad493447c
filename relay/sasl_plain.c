/*
 * SASL PLAIN message and strict base64 for the proxy front ends (RFC 4616, RFC 4648).
 * A hand-written decoder rather than EVP_DecodeBlock: that one skips white space, needs
 * the caller to undo padding, and accepts non-zero pad bits; we refuse all three.
 * Never logs, never leaves decoded bytes on the stack, never reads past len.
 */
#include <string.h>

#include "sasl_plain.h"

static const char sasl_b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int
sasl_b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

int
sasl_base64_decode(const char *in, size_t len, unsigned char *out, size_t outcap, size_t *outlen)
{
	size_t i, o = 0, pad = 0;
	int v[4], k;

	*outlen = 0;
	/* RFC 4648 3.2: padding is required, so the length is a multiple of four. */
	if (len % 4 != 0)
		return -1;
	if (len >= 1 && in[len - 1] == '=')
		pad = (len >= 2 && in[len - 2] == '=') ? 2 : 1;
	if (len / 4 * 3 - pad > outcap)
		return -1;
	for (i = 0; i < len; i += 4) {
		int last = (i + 4 == len);

		for (k = 0; k < 4; k++) {
			if (last && k >= 4 - (int)pad) {
				v[k] = 0;
				continue;
			}
			if ((v[k] = sasl_b64_value((unsigned char)in[i + k])) == -1)
				return -1;
		}
		/* RFC 4648 3.5: the bits a pad leaves unused must be zero (canonical form). */
		if (last && pad == 2 && (v[1] & 0x0f) != 0)
			return -1;
		if (last && pad == 1 && (v[2] & 0x03) != 0)
			return -1;
		out[o++] = (unsigned char)(v[0] << 2 | v[1] >> 4);
		if (!last || pad < 2)
			out[o++] = (unsigned char)((v[1] & 0x0f) << 4 | v[2] >> 2);
		if (!last || pad < 1)
			out[o++] = (unsigned char)((v[2] & 0x03) << 6 | v[3]);
	}
	*outlen = o;
	return 0;
}

int
sasl_base64_encode(const void *in, size_t len, char *out, size_t outcap)
{
	const unsigned char *p = in;
	size_t i, o = 0, need = (len + 2) / 3 * 4;

	if (outcap == 0 || need > outcap - 1)
		return -1;
	for (i = 0; i + 2 < len; i += 3) {
		out[o++] = sasl_b64_alphabet[p[i] >> 2];
		out[o++] = sasl_b64_alphabet[(p[i] & 0x03) << 4 | p[i + 1] >> 4];
		out[o++] = sasl_b64_alphabet[(p[i + 1] & 0x0f) << 2 | p[i + 2] >> 6];
		out[o++] = sasl_b64_alphabet[p[i + 2] & 0x3f];
	}
	if (len - i == 1) {
		out[o++] = sasl_b64_alphabet[p[i] >> 2];
		out[o++] = sasl_b64_alphabet[(p[i] & 0x03) << 4];
		out[o++] = '=';
		out[o++] = '=';
	} else if (len - i == 2) {
		out[o++] = sasl_b64_alphabet[p[i] >> 2];
		out[o++] = sasl_b64_alphabet[(p[i] & 0x03) << 4 | p[i + 1] >> 4];
		out[o++] = sasl_b64_alphabet[(p[i + 1] & 0x0f) << 2];
		out[o++] = '=';
	}
	out[o] = '\0';
	return 0;
}

int
sasl_user_byte_ok(unsigned char c)
{
	return c >= 0x20 && c != 0x7f;
}

int
sasl_pass_byte_ok(unsigned char c)
{
	return c != '\0' && c != '\r' && c != '\n';
}

void
sasl_creds_wipe(struct sasl_creds *creds)
{
	explicit_bzero(creds, sizeof(*creds));
}

static int
sasl_field_ok(const unsigned char *p, size_t len, int (*byte_ok)(unsigned char))
{
	size_t i;

	for (i = 0; i < len; i++)
		if (!byte_ok(p[i]))
			return 0;
	return 1;
}

/* Splits msg into the three fields; *reason on failure. */
static enum sasl_plain_result
sasl_plain_split(const unsigned char *msg, size_t len, struct sasl_creds *creds,
                 const char **reason)
{
	const unsigned char *nul1, *nul2, *authcid, *passwd;
	size_t zlen, clen, plen;

	/* RFC 4616 2: message = [authzid] UTF8NUL authcid UTF8NUL passwd. */
	if ((nul1 = memchr(msg, '\0', len)) == NULL) {
		*reason = "PLAIN message has no NUL separator";
		return SASL_PLAIN_BAD_MESSAGE;
	}
	authcid = nul1 + 1;
	if ((nul2 = memchr(authcid, '\0', len - (size_t)(authcid - msg))) == NULL) {
		*reason = "PLAIN message has one NUL separator, not two";
		return SASL_PLAIN_BAD_MESSAGE;
	}
	passwd = nul2 + 1;
	zlen = (size_t)(nul1 - msg);
	clen = (size_t)(nul2 - authcid);
	plen = len - (size_t)(passwd - msg);
	/* SAFE excludes NUL: a third NUL is not part of any field. */
	if (memchr(passwd, '\0', plen) != NULL) {
		*reason = "PLAIN message has more than two NUL separators";
		return SASL_PLAIN_BAD_MESSAGE;
	}
	/* RFC 4616 2: authcid = 1*SAFE, passwd = 1*SAFE. */
	if (clen == 0) {
		*reason = "PLAIN authentication identity is empty";
		return SASL_PLAIN_BAD_MESSAGE;
	}
	if (plen == 0) {
		*reason = "PLAIN password is empty";
		return SASL_PLAIN_BAD_MESSAGE;
	}
	if (zlen > SASL_USER_MAX || clen > SASL_USER_MAX) {
		*reason = "PLAIN identity too long";
		return SASL_PLAIN_BAD_MESSAGE;
	}
	if (plen > SASL_PASS_MAX) {
		*reason = "PLAIN password too long";
		return SASL_PLAIN_BAD_MESSAGE;
	}
	if (!sasl_field_ok(msg, zlen, sasl_user_byte_ok) ||
	    !sasl_field_ok(authcid, clen, sasl_user_byte_ok)) {
		*reason = "PLAIN identity contains control characters";
		return SASL_PLAIN_BAD_MESSAGE;
	}
	if (!sasl_field_ok(passwd, plen, sasl_pass_byte_ok)) {
		*reason = "PLAIN password contains CR or LF";
		return SASL_PLAIN_BAD_MESSAGE;
	}
	/*
	 * RFC 4616 2: an authzid other than the authcid asks to act as someone else; the
	 * proxy has no such policy, so it refuses (RFC 5530 AUTHORIZATIONFAILED).
	 */
	if (zlen != 0 && (zlen != clen || memcmp(msg, authcid, clen) != 0)) {
		*reason = "authorization identity differs from authentication identity";
		return SASL_PLAIN_AUTHZ_DENIED;
	}
	memcpy(creds->authzid, msg, zlen);
	creds->authzid[zlen] = '\0';
	creds->authzid_len = zlen;
	memcpy(creds->user, authcid, clen);
	creds->user[clen] = '\0';
	creds->user_len = clen;
	memcpy(creds->pass, passwd, plen);
	creds->pass[plen] = '\0';
	creds->pass_len = plen;
	return SASL_PLAIN_OK;
}

enum sasl_plain_result
sasl_plain_decode(const char *b64, size_t len, struct sasl_creds *creds, const char **reason)
{
	unsigned char msg[SASL_PLAIN_MSG_MAX];
	enum sasl_plain_result r;
	size_t mlen;

	sasl_creds_wipe(creds);
	*reason = NULL;
	if (len > SASL_PLAIN_B64_MAX) {
		*reason = "PLAIN response too long";
		return SASL_PLAIN_BAD_MESSAGE;
	}
	if (sasl_base64_decode(b64, len, msg, sizeof(msg), &mlen) == -1) {
		explicit_bzero(msg, sizeof(msg));
		*reason = "invalid base64";
		return SASL_PLAIN_BAD_BASE64;
	}
	if ((r = sasl_plain_split(msg, mlen, creds, reason)) != SASL_PLAIN_OK)
		sasl_creds_wipe(creds);
	explicit_bzero(msg, sizeof(msg));
	return r;
}

int
sasl_plain_encode(const struct sasl_creds *creds, char *out, size_t outcap)
{
	unsigned char msg[SASL_PLAIN_MSG_MAX];
	size_t n = 0;
	int rc;

	if (creds->authzid_len > SASL_USER_MAX || creds->user_len > SASL_USER_MAX ||
	    creds->pass_len > SASL_PASS_MAX)
		return -1;
	memcpy(msg, creds->authzid, creds->authzid_len);
	n += creds->authzid_len;
	msg[n++] = '\0';
	memcpy(msg + n, creds->user, creds->user_len);
	n += creds->user_len;
	msg[n++] = '\0';
	memcpy(msg + n, creds->pass, creds->pass_len);
	n += creds->pass_len;
	rc = sasl_base64_encode(msg, n, out, outcap);
	explicit_bzero(msg, sizeof(msg));
	return rc;
}
