/*
 * IPVS generic-netlink messages without I/O: requests built into libnl messages, kernel
 * replies located and decoded from raw bytes. Never touches a socket; every length in a
 * reply is checked before it is read, so a short or lying message is rejected, not read past.
 */
#ifndef MAILPLEX_IPVS_MSG_H
#define MAILPLEX_IPVS_MSG_H

#include <stddef.h>
#include <stdint.h>

#include "ipvs.h"

struct nl_msg;
struct nlattr;

/* One request: op says which of the other members are used. */
struct ipvs_req {
	enum ipvs_op op;
	struct ipvs_service svc;
	struct ipvs_dest dest;
	struct ipvs_timeouts timeouts;
	struct ipvs_daemon daemon;
};

/*
 * Builds req for the generic-netlink family id into a new message (port and sequence
 * left for the sender; NLM_F_DUMP set for dumps). 0, or -1 with err (EINVAL for
 * arguments the kernel would refuse, ENOMEM).
 */
int ipvs_msg_build(const struct ipvs_req *req, int family, struct nl_msg **out,
                   struct ipvs_error *err);
/* Whether op is answered by a multi-part dump that ends with NLMSG_DONE. */
int ipvs_msg_is_dump(enum ipvs_op op);

enum ipvs_reply_kind {
	IPVS_REPLY_DATA, /* a generic-netlink message of the family */
	IPVS_REPLY_ACK,  /* NLMSG_ERROR: error 0 is the ACK */
	IPVS_REPLY_DONE, /* end of a dump, may carry an error */
	IPVS_REPLY_SKIP, /* NLMSG_NOOP or a type nobody asked for */
};

struct ipvs_reply {
	enum ipvs_reply_kind kind;
	uint16_t type;
	uint16_t flags;
	uint32_t seq;
	int error;                  /* ACK, DONE: 0 or a positive errno */
	uint8_t cmd;                /* DATA: the generic-netlink command */
	const struct nlattr *attrs; /* DATA: the attributes after the genl header */
	size_t attrlen;
};

/*
 * The next netlink message in buf[*off..len). 1 and *r filled, 0 at the end of the buffer,
 * -1 if the buffer is malformed (the rest of it cannot be trusted).
 */
int ipvs_reply_next(const void *buf, size_t len, size_t *off, struct ipvs_reply *r);

/* Decoders of one DATA reply: 0, or -1 if it is not that kind or is malformed. */
int ipvs_reply_service(const struct ipvs_reply *r, struct ipvs_service *svc);
/* svc_af: the family of a destination from a kernel that does not report one. */
int ipvs_reply_dest(const struct ipvs_reply *r, int svc_af, struct ipvs_dest *dest);
int ipvs_reply_daemon(const struct ipvs_reply *r, struct ipvs_daemon *d);
int ipvs_reply_info(const struct ipvs_reply *r, struct ipvs_info *info);
int ipvs_reply_timeouts(const struct ipvs_reply *r, struct ipvs_timeouts *t);

#endif
