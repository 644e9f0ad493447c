/*
 * Fuzz target for the queue runner's state-log replay (relay/queue_state.c). Not network
 * input, but a log cut short by a crash or damaged on disk must never crash the runner or
 * resurrect a recipient: the first byte is the recipient count, the rest the log. Checks
 * the valid prefix, the states and that replaying the valid prefix alone gives the same.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../relay/queue_state.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct queue_state a, b;
	size_t n, i;

	if (size < 1)
		return 0;
	n = data[0] % 8;
	if (queue_state_init(&a, n) == -1 || queue_state_init(&b, n) == -1)
		abort();
	queue_state_replay(&a, (const char *)data + 1, size - 1);
	if (a.valid_len > size - 1 || (a.valid_len < size - 1) != (a.torn != 0))
		abort();
	queue_state_replay(&b, (const char *)data + 1, a.valid_len);
	if (b.torn || b.attempts != a.attempts || b.next_try != a.next_try || b.held != a.held)
		abort();
	for (i = 0; i < n; i++) {
		if (a.rcpt[i].state > QUEUE_RCPT_BOUNCED || a.rcpt[i].state != b.rcpt[i].state)
			abort();
		if (strnlen(a.rcpt[i].reply, sizeof(a.rcpt[i].reply)) >= sizeof(a.rcpt[i].reply))
			abort();
	}
	queue_state_free(&a);
	queue_state_free(&b);
	return 0;
}
