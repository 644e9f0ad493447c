# lib/control: the control-socket protocol (server on the event loop, client for mailplexctl).
LIB_SRCS += lib/control.c
