MODULES += project
project_LDLIBS := -lyaml -lsqlite3
