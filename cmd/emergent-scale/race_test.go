//go:build race

package main

// raceDetector says the test binary, and so the emergentd worker it runs (os.Executable), was
// built with -race, which multiplies the CPU a cycle costs.
const raceDetector = true
