package io.psiskv.cli;

import io.psiskv.client.KvClient;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Parameters;
import picocli.CommandLine.ParentCommand;
import picocli.CommandLine.Spec;

/** {@code del KEY}. */
@Command(exitCodeListHeading = "%nExit codes:%n",
    exitCodeList = {
        "0:removed",
        "1:no such key",
        PsiskvCli.EXIT_2_LINE,
        PsiskvCli.EXIT_3_LINE},
    name = "del", mixinStandardHelpOptions = true,
    description = {"Removes KEY and its value."})
final class DelCommand implements Callable<Integer> {
  @ParentCommand PsiskvCli cli;
  @Spec CommandSpec spec;

  @Parameters(index = "0", paramLabel = "KEY", converter = KeyConverter.class,
      description = "0 to 4294967295, or 0x0 to 0xffffffff")
  int key;

  @Override
  public Integer call() {
    cli.checkConnectionOptions(spec.commandLine());
    try (KvClient kv = cli.connect()) {
      if (kv.remove(key)) {
        return PsiskvCli.EXIT_OK;
      }
    }
    spec.commandLine().getErr().println("psiskv-cli: no such key "
        + Integer.toUnsignedString(key));
    return PsiskvCli.EXIT_NO;
  }
}
