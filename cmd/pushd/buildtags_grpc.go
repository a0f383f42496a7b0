//go:build !disable_grpc_modules

package main

// withGRPCModules reports that this binary was built without buildtag.Shipped.
const withGRPCModules = true
