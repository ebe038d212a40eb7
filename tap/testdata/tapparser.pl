#!/usr/bin/perl
# tapparser.pl FILE: how Perl's TAP::Parser (the reader behind prove) reads
# the TAP in FILE, for differential_test.go, which feeds the same file to
# turtles' parser and requires the same tests, names, outcomes and counts.
#
# TAP::Parser reads one stream; a log holds several. This script cuts the
# log where turtles says one stream ends (tap/stream.go: prove's headers
# and verdicts, a "TAP version" line or a second plan, a test numbered 1
# after a complete stream) and gives each stream to a fresh TAP::Parser.
# Subtests, which TAP::Parser takes for unknown lines, are read the same
# way: each run of lines indented by four or more is a stream of its own,
# one level down (lines TAP::Parser read as a YAML block of the stream
# above are in no run). Everything a test point says comes from TAP::Parser.
#
# Output, one record a line, fields separated by tabs, with "\", tab, CR
# and LF in a field written as \\, \t, \r and \n:
#   test  LINE DEPTH NUMBER OK(ok|not ok) DIRECTIVE(SKIP|TODO|) UNPLANNED(0|1) FILE NAME REASON DESCRIPTION
#   stream DEPTH FILE FIRST LAST PLANNED(-1: none) RUN PASSED FAILED SKIPPED TODO ABORTED(0 or LINE)
#   subtest NAME
#   bailout LINE
# LINE numbers are 1-based lines of FILE. NAME and REASON are TAP::Parser's
# description and explanation as turtles shows them: node-tap's trailing
# "# time=12ms" cut off, a leading "- " and the colon of "SKIP: why"
# dropped, "\#" and "\\" unescaped. DESCRIPTION is TAP::Parser's, as is.
# ABORTED is the line where TAP::Parser gave up on the stream (a YAML
# block it could not read): it reports nothing after it.
use strict;
use warnings;
use TAP::Parser;
use TAP::Parser::Iterator::Array;
use List::Util qw(min);

binmode STDOUT;
my $path = shift or die "usage: $0 FILE\n";
open my $fh, '<:raw', $path or die "$path: $!\n";
my @lines;
while ( my $l = <$fh> ) {
    $l =~ s/\n\z//;
    $l =~ s/\r\z//;
    $l =~ s/\x1b\[[0-9;?]*[ -\/]*[\@-~]//g;    # turtles reads coloured logs
    push @lines, $l;
}
close $fh;

sub field {
    my $s = shift;
    $s = '' unless defined $s;
    $s =~ s/\\/\\\\/g;
    $s =~ s/\t/\\t/g;
    $s =~ s/\r/\\r/g;
    $s =~ s/\n/\\n/g;
    return $s;
}

sub out { print join( "\t", map { field($_) } @_ ), "\n" }

my $ws = qr/[ \t\n\x0b\f\r]/;

sub shown {
    my ( $desc, $expl, $has_dir ) = @_;
    my $cut = qr/(?:^|$ws)#$ws*time=$ws*[0-9.]+$ws*(?:ms|s)$ws*\z/;
    if ($has_dir) { $expl =~ s/$cut//; $expl =~ s/$ws+\z// }
    else          { $desc =~ s/$cut//; $desc =~ s/$ws+\z// }
    $desc =~ s/^-(?:$ws+|\z)//;
    $desc =~ s/\\([#\\])/$1/g;
    $expl =~ s/^://;
    $expl =~ s/^$ws+//;
    $expl =~ s/$ws+\z//;
    return ( $desc, $expl );
}

# line_directive says whether a test line holds a SKIP or TODO directive
# (TAP::Parser's own test, from TAP::Parser::Grammar), as opposed to a
# TODO that an old "1..N todo 3" plan gave it.
sub line_directive {
    my ($desc) = $_[0] =~ /^(?:not )?ok\b\s*(?:\d+)?\s*(.*)\z/;
    return $desc =~ m/^ ( [^\\\#]* (?: \\. [^\\\#]* )* ) \# \s* (SKIP|TODO) \b/ix ? 1 : 0;
}

# The top level: prove's sections.
my $prove = qr/^(\S+\.\S+) \.{2,}\s*(?:$|ok$|skipped|\d)/;
my ( $file, $from ) = ( '', 0 );
for my $i ( 0 .. $#lines ) {
    my $l = $lines[$i];
    if ( $l =~ $prove && $l !~ /^(?:not )?ok\b/ ) {
        streams( [ @lines[ $from .. $i - 1 ] ], $from, 0, $file );
        ( $file, $from ) = ( $1, $i + 1 );
    }
    elsif ( $file ne '' && ( $l eq 'ok' || $l eq 'not ok' ) ) {
        streams( [ @lines[ $from .. $i - 1 ] ], $from, 0, $file );
        ( $file, $from ) = ( '', $i + 1 );
    }
}
streams( [ @lines[ $from .. $#lines ] ], $from, 0, $file );

# streams cuts $lines (whose first is line $base of the file, counting from
# 0) into streams at depth $depth.
sub streams {
    my ( $lines, $base, $depth, $file ) = @_;
    my $pos = 0;
    while ( $pos < @$lines ) {
        my $end = boundary( $lines, $pos );
        report( [ @$lines[ $pos .. $end - 1 ] ], $base + $pos, $depth, $file );
        $pos = $end;
    }
}

# boundary is where the stream that starts at $lines->[$pos] ends.
sub boundary {
    my ( $lines, $pos ) = @_;
    my @chunk = @$lines[ $pos .. $#$lines ];
    my $it    = TAP::Parser::Iterator::Array->new( \@chunk );
    my $p     = TAP::Parser->new( { iterator => $it } );
    my ( $started, $has_plan, $planned, $trailing, $run ) = ( 0, 0, 0, 0, 0 );
    while ( my $r = $p->next ) {
        my $at       = $it->{idx} - 1;
        my $complete = $has_plan && ( $trailing || $run >= $planned );
        if ( $r->is_version ) {
            return $pos + $at if $started;
            $started = 1;
        }
        elsif ( $r->is_plan ) {
            return $pos + $at if $has_plan;
            ( $started, $has_plan, $planned, $trailing ) = ( 1, 1, $r->tests_planned, $run > 0 );
        }
        elsif ( $r->is_test ) {
            my ($num) = $r->raw =~ /^(?:not )?ok\b\s*(\d+)?/;
            return $pos + $at if $complete && ( !defined $num || $num == 1 );
            ( $started, $run ) = ( 1, $run + 1 );
        }
    }
    return scalar @$lines;
}

# report parses one stream and prints what TAP::Parser makes of it, then
# does the same for its subtests.
sub report {
    my ( $lines, $base, $depth, $file ) = @_;
    my $it = TAP::Parser::Iterator::Array->new( [@$lines] );
    my $p  = TAP::Parser->new( { iterator => $it } );
    my ( $before, $aborted ) = ( 0, 0 );
    my %yaml;    # lines TAP::Parser read as YAML of this stream
    my $took = sub {    # the lines from $before on were one YAML token
        return unless $lines->[$before] =~ /^(\s+)---/ && length($1) < 4;
        $yaml{$_} = 1 for $before .. min( $it->{idx}, scalar @$lines ) - 1;
    };
    while (1) {
        $before = $it->{idx};
        my $r = $p->next;
        if ( !$r ) {
            # A token that read lines and gave no result: TAP::Parser
            # failed on it (a YAML block) and stops there.
            if ( $before < @$lines ) {
                $aborted = $base + $before + 1;
                $took->();
            }
            last;
        }
        $took->() if $r->is_yaml;
        my $line = $base + $it->{idx};    # 1-based
        if ( $r->is_test ) {
            my ( $name, $reason ) = shown( $r->description, $r->explanation, line_directive( $r->raw ) );
            out( 'test', $line, $depth, $r->number, $r->ok, $r->directive, $r->is_unplanned ? 1 : 0,
                $file, $name, $reason, $r->description );
        }
        elsif ( $r->is_comment && $r->raw =~ /^#\s*Subtest(?::\s*(.*))?$/ ) {
            my $n = defined $1 ? $1 : '';
            $n =~ s/^\s+|\s+$//g;
            out( 'subtest', $n );
        }
        elsif ( $r->is_bailout ) {
            out( 'bailout', $line );
        }
    }
    out( 'stream', $depth, $file, $base + 1, $base + @$lines,
        defined $p->tests_planned ? $p->tests_planned : -1,
        $p->tests_run, scalar $p->passed, scalar $p->failed, scalar $p->skipped, scalar $p->todo, $aborted );

    # Subtests: runs of lines indented by four or more (blank lines do not
    # end a run), read one level down. A YAML block of this stream (one
    # indented by less than four) is no subtest's and ends a run.
    my $i = 0;
    while ( $i < @$lines ) {
        if ( $lines->[$i] !~ /^    / || $yaml{$i} ) { $i++; next }
        my $start = $i;
        $i++ while $i < @$lines && !$yaml{$i} && $lines->[$i] =~ /^(?:    | *\z)/;
        my @child = map { my $c = $_; $c =~ s/^    //; $c =~ s/^ +\z//; $c } @$lines[ $start .. $i - 1 ];
        streams( \@child, $base + $start, $depth + 1, $file );
    }
}
