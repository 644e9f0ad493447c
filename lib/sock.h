/*
 * Socket helpers: address parsing and formatting, listen, accept, non-blocking connect.
 * Every descriptor made here is non-blocking and close-on-exec; errors go into the
 * caller's buffer. Nothing here resolves names except sock_resolve (config time only).
 */
#ifndef MAILPLEX_SOCK_H
#define MAILPLEX_SOCK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* "[ffff:...]:65535" plus terminator; also fits "host:port" for a 253-byte host name. */
#define SOCK_ADDR_STRLEN 264
#define SOCK_HOST_MAX    256

#define SOCK_F_REUSEPORT 0x01 /* SO_REUSEPORT: one listener per worker process */

/*
 * Splits "host:port", "[v6addr]:port" or "*:port" without resolving. host receives the
 * bare host ("*", "192.0.2.1", "::1", "mx.example"); the syntax of each is checked
 * (IP literals with inet_pton, names by RFC 1123 label rules). Port 0..65535.
 */
int sock_addr_split(const char *s, char *host, size_t hostlen, uint16_t *port, char *err,
                    size_t errlen);
/*
 * Numeric hosts only. "*:port" is 0.0.0.0 (IPv4 any); use "[::]:port" for IPv6 any, a
 * separate v6-only listener.
 */
int sock_addr_parse(const char *s, struct sockaddr_storage *ss, socklen_t *sslen, char *err,
                    size_t errlen);
/* Like sock_addr_parse but resolves a host name with getaddrinfo: blocking, config time. */
int sock_resolve(const char *s, struct sockaddr_storage *ss, socklen_t *sslen, char *err,
                 size_t errlen);
/* "192.0.2.1:25", "[::1]:25". 0, or -1 if the family is unknown or buf too small. */
int sock_addr_format(const struct sockaddr *sa, char *buf, size_t buflen);

/* Bound, listening socket (SO_REUSEADDR; IPV6_V6ONLY on v6). Returns fd or -1. */
int sock_listen(const struct sockaddr_storage *ss, socklen_t sslen, int backlog, int flags,
                char *err, size_t errlen);
/*
 * accept4(NONBLOCK|CLOEXEC). Returns the fd; or -1 with errno EAGAIN and err empty when
 * there is nothing to take now (EAGAIN, EINTR, ECONNABORTED: the peer left already);
 * or -1 with errno and err set (EMFILE, ENFILE, ENOBUFS: the caller pauses accepting).
 */
int sock_accept(int lfd, struct sockaddr_storage *peer, socklen_t *peerlen, char *err,
                size_t errlen);
/* Non-blocking connect; EINPROGRESS is success. Returns fd or -1. */
int sock_connect_start(const struct sockaddr_storage *ss, socklen_t sslen, char *err,
                       size_t errlen);
/* After the fd became writable: 0 if connected, else -1 with errno = the SO_ERROR value. */
int sock_connect_result(int fd);
/* SO_KEEPALIVE with the first probe after idle_s, then every interval_s, count probes. */
int sock_set_keepalive(int fd, int idle_s, int interval_s, int count, char *err, size_t errlen);

#endif
