MODULES += oci
oci_LDLIBS := -lcurl -ljansson -lsqlite3 -lcrypto
