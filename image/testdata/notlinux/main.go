// Command notlinux compiles everywhere but on Linux: hostOnly exists only
// for other systems.
package main

func main() { hostOnly() }
