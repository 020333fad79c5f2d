#!/usr/bin/env bash
# seed-corpus.sh VECTORS DIR PREFIX [STREAM_NAME]: writes one seed file per golden vector into
# DIR (its name, the bytes PREFIX (hex) followed by the vector's bytes), and with STREAM_NAME one
# more file holding PREFIX and every vector's bytes one after the other. The vectors file
# (PROTOCOL.md 10) stays the only source of the bytes: nothing here copies them.
set -euo pipefail
[ $# -ge 3 ] || { echo "usage: $0 VECTORS DIR PREFIX [STREAM_NAME]" >&2; exit 2; }
mkdir -p "$2"
perl -e '
  my ($vectors, $dir, $prefix, $stream) = @ARGV;
  open(my $in, "<", $vectors) or die "$vectors: $!\n";
  my $all = "";
  while (my $line = <$in>) {
    next if $line =~ /^#/ || $line =~ /^\s*$/;
    my ($name, $hex) = split(" ", $line);
    die "$vectors: malformed line: $line" unless defined $hex && $hex =~ /^(?:[0-9a-f]{2})+$/;
    open(my $out, ">:raw", "$dir/$name") or die "$dir/$name: $!\n";
    print $out pack("H*", $prefix . $hex);
    close $out or die;
    $all .= $hex;
  }
  if (defined $stream) {
    open(my $out, ">:raw", "$dir/$stream") or die "$dir/$stream: $!\n";
    print $out pack("H*", $prefix . $all);
    close $out or die;
  }
' "$@"
