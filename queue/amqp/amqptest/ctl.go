package amqptest

import "slices"

// CtlBin is the Debian package's unwrapped rabbitmqctl: the wrapper in
// /usr/sbin switches to the rabbitmq user and the system-wide node's
// Erlang cookie, so it cannot reach a private node.
const CtlBin = "/usr/lib/rabbitmq/bin/rabbitmqctl"

// Env is the environment in which RabbitMQ's tools (CtlBin) reach this
// node: its node name, Erlang cookie (HOME) and epmd port. It includes
// the test process's own environment.
func (b *Broker) Env() []string { return slices.Clone(b.env) }
