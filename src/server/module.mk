MODULES += server
server_LDLIBS := -lmicrohttpd -ljansson -lcrypto
