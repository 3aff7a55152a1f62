"""Images: an OCI image layout in, a verified and fully applied root filesystem out.

`store.ImageStore` is the entry point; nothing here is imported until a command needs it.
"""
