// Package flightrec is the flight recorder: the room where ec2diag decides
// that the machine is in trouble and writes down why, before the machine
// can hang.
//
// It owns the cadence (a host sample every interval, faster in a spike,
// at once when a job starts or a PSI trigger fires; a process scan only
// when something could need it), the ring of recent samples, detection
// (correlate.Detector), the decision (correlate.Decide over the ring since
// onset) and the incident's timeline. It is fed by the log reader through
// jobs.Listener, which it implements, and by procstat's sampler and scanner
// (producers it calls); it writes through Evidence, which it does not
// implement: the store, the console and the shipper are behind it.
//
// Outside text reaching it (process names and command lines through
// procinfo, job names, kernel messages) is bounded and escaped where it
// enters; a record's size is bounded where it is encoded (evidence).
package flightrec
