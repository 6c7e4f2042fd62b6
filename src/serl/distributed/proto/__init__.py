"""Generated protobuf and gRPC modules of the transport (see transport.proto to regenerate)."""
