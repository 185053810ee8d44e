MODULES += project
# Uses the oci module for image references (oci_ref_parse): link both.
project_LDLIBS := -lyaml -lsqlite3
