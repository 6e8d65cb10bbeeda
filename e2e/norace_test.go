//go:build !race

package e2e

// raceBuild: the suite runs without -race; so are the apps.
const raceBuild = false
