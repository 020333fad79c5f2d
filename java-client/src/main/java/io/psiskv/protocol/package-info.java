/**
 * The wire codec of PROTOCOL.md, shared by the client and the servers: internal, except {@link
 * io.psiskv.protocol.Status}, the status a {@link io.psiskv.client.KvException} carries. The
 * other types here (the header, messages, opcodes, rules) are not part of the client's API: they
 * are left out of its Javadoc and may change in any release.
 */
package io.psiskv.protocol;
