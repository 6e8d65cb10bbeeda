// Command hello is the smallest app an image is built of in tests.
package main

import "fmt"

func main() { fmt.Println("hello") }
