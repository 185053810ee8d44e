MODULES += agent
agent_LDLIBS :=
BINS += msb-agent
msb-agent_SRCS := src/agent/main.c src/agent/main_repl.c
# sandbox: only its terminal pump (tty.c) for `msb-agent pty`.
msb-agent_MODULES := agent sandbox common
