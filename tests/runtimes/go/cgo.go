//go:build with_cgo

// Built with -tags with_cgo, the program links the C library through cgo: the system linker
// links it, and its threads are the C library's.
package main

// #include <stdlib.h>
import "C"
