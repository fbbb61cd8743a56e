// Package buildinfo says which build of tenantvault is running, for
// `vaultd --version` and `vaultctl version`: the version set at link time
// (-ldflags "-X github.com/tenantvault/tenantvault/internal/buildinfo.Version=v1.2.3"),
// else the module version and VCS revision the Go toolchain recorded.
//
// It imports only the standard library and never reads configuration,
// files or the environment.
package buildinfo
