// Package actors holds the protocol: the three roles of Two-Phase Commit as
// protoactor-go actors.
//
//   - coordinator, one per node: takes Begin, names the transaction, spawns
//     a txn actor for it and supervises it.
//   - txn, one per transaction: collects votes, has the decision logged,
//     drives it to every participant, then stops.
//   - participant, one per node: owns the node's slice of the key-value
//     state and its lock table; prepares, commits and aborts.
//
// Nothing here knows about TCP or files: roles find each other through a
// Directory of PIDs and reach the disk by messages to the persistence actor.
// Tests swap either for probe actors.
package actors
