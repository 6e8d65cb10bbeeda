//go:build race

package e2e

// raceBuild: the suite runs under -race, so the apps are built with it too.
const raceBuild = true
