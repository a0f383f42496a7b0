// Package buildtag names the build tags pushd is shipped and measured with
// (scripts/build.sh sets the same).
package buildtag

// Shipped is the -tags setting of a shipped pushd. disable_grpc_modules is
// cloud.google.com/go/storage's documented switch that leaves out its gRPC
// direct-path modules (grpc/xds, grpc/balancer/rls, envoy's
// go-control-plane): the firebase app imports that storage client, pushd
// never uses it, and without the tag pushd's resident memory is about 9 MB
// higher.
const Shipped = "disable_grpc_modules"
