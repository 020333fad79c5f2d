/**
 * The Java client of psiskv: {@link io.psiskv.client.KvClient} (synchronous and asynchronous calls,
 * reconnection, timeouts) and the exceptions its calls throw, {@link
 * io.psiskv.client.KvException} and its subclasses. The status an exception carries is {@link
 * io.psiskv.protocol.Status}. This package is the client's public API.
 */
package io.psiskv.client;
