MODULES += sandbox
# Boots sandboxes with msb-vmm and talks to msb-init through the agent library; gets
# images from the oci store and sandbox descriptions from the project library.
sandbox_LDLIBS := -lpthread
