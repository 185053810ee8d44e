MODULES += common
common_LDLIBS :=
