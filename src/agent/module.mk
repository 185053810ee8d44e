MODULES += agent
agent_LDLIBS :=
BINS += msb-agent
msb-agent_SRCS := src/agent/main.c
msb-agent_MODULES := agent common
