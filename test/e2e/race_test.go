//go:build e2e && race

package e2e

// Under -race (make e2e) the functional tests run a race-enabled build of
// the binary, so a data race in the pipeline, the provisioner's parallel
// graph or the proxy fails them.
func init() { raceEnabled = true }
