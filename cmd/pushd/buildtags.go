package main

// shippedTags are the build tags pushd is shipped and measured with
// (scripts/build.sh). disable_grpc_modules is cloud.google.com/go/storage's
// switch that leaves out its gRPC direct-path modules: the firebase app
// imports that storage client, pushd never uses it, and without the tag
// pushd's resident memory is about 9 MB higher.
const shippedTags = "disable_grpc_modules"
