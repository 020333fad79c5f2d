package io.psiskv.clients;

import com.sun.jna.Library;
import com.sun.jna.Native;

/**
 * {@code c-headers/psiskv.h} for JNA: the five functions of {@code libpsiskv.so}, found through
 * the {@code jna.library.path} system property (native/target, set by Surefire). {@code uint32_t}
 * maps to a Java int of the same bits.
 */
interface NativePsiskv extends Library {
  NativePsiskv LIB = Native.load("psiskv", NativePsiskv.class);

  int kv_connect(String kvServerIp, int kvServerPort);

  void kv_close(int kvDescriptor);

  int kv_write(int kvDescriptor, int key, byte[] value, int valueLength, int kvOverwrite);

  int kv_read(int kvDescriptor, int key, byte[] value, int valueLength);

  int kv_delete(int kvDescriptor, int key);
}
