// Package notmain is a library, not a program: flash run must say so.
package notmain

// Answer is here so the package is not empty.
const Answer = 42
