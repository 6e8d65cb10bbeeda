//go:build !linux

package main

func hostOnly() {}
