# Regenerates fixtures/fugit/next_times.json from the real fugit that resque-scheduler 5.0 uses
# (Debian's ruby-fugit 1.5.2, as in fixtures/ruby-plugins/README.md):
#
#   apt-get install ruby-fugit && TZ=Etc/UTC ruby tests/fugit_oracle.rb > fixtures/fugit/next_times.json
#
# Each case: a cron line, a UTC start, and the next N slots fugit gives (each next_time called
# from the previous answer, as rufus-scheduler does), as epoch seconds.
require 'json'
require 'fugit'

CASES = [
  # [cron, from (UTC), count]
  ['* * * * *', '2026-12-07 05:29:51', 3],
  ['*/15 * * * *', '2026-12-07 05:29:51', 5],
  ['5/15 * * * *', '2026-12-07 05:29:51', 5],
  ['0 5 * * *', '2026-12-07 05:29:51', 3],
  ['0 5 * * * Europe/Stockholm', '2026-12-07 05:29:51', 3],
  ['* * * * * * Europe/Stockholm', '2026-12-07 05:29:51', 3],
  ['*/20 * * * * *', '2026-12-07 05:29:51', 4],
  ['15,45 30 * * * *', '2026-12-07 05:29:51', 4],
  ['30 4 1,15 * 5', '2026-12-01 00:00:00', 8],
  ['0 0 13 * 5', '2026-01-01 00:00:00', 8],
  ['0 0 */2 * 1', '2026-12-01 00:00:00', 8],
  ['0 0 * * */1', '2026-12-01 00:00:00', 3],
  ['0 0 15 * */1', '2026-12-01 00:00:00', 3],
  ['0 0 * * */2', '2026-12-01 00:00:00', 5],
  ['0 0 * * 1/2', '2026-12-01 00:00:00', 3],
  ['0 0 * * 1-5', '2026-12-04 00:00:00', 4],
  ['0 0 * * 5-1', '2026-12-01 00:00:00', 6],
  ['0 0 * * 1,3-5', '2026-12-01 00:00:00', 6],
  ['0 0 * * 7', '2026-12-01 00:00:00', 2],
  ['0 0 * * sun', '2026-12-01 00:00:00', 2],
  ['0 12 * jan-mar mon', '2026-12-01 00:00:00', 3],
  ['0 22-2 * * *', '2026-12-07 12:00:00', 6],
  ['0 24 * * *', '2026-12-07 12:00:00', 2],
  ['0 0 L * *', '2026-01-15 00:00:00', 4],
  ['0 0 last * *', '2026-01-15 00:00:00', 2],
  ['0 0 -2 * *', '2026-01-15 00:00:00', 4],
  ['0 0 L 2 *', '2026-01-01 00:00:00', 3],
  ['0 0 29 2 *', '2026-01-01 00:00:00', 2],
  ['0 0 31 * *', '2026-01-01 00:00:00', 4],
  ['0 0 1-31/10 * *', '2026-01-01 00:00:00', 4],
  ['0 0 * * mon#2', '2026-01-01 00:00:00', 3],
  ['0 0 * * fri#-1', '2026-01-01 00:00:00', 3],
  ['0 0 * * fri#L', '2026-01-01 00:00:00', 3],
  ['0 0 1 1 *', '2026-01-01 00:00:00', 2],
  ['@hourly', '2026-12-07 05:29:51', 2],
  ['@weekly', '2026-12-07 05:29:51', 2],
  ['@daily', '2026-12-07 05:29:51', 2],
  ['0 0 * * * +0900', '2026-12-07 05:29:51', 2],
  ['0 9 * * 1-5 America/Los_Angeles', '2026-12-04 00:00:00', 3],
  # DST: Europe/Stockholm 2026-03-29 02:00 -> 03:00 and 2026-10-25 03:00 -> 02:00;
  # America/New_York 2026-03-08 02:00 -> 03:00 and 2026-11-01 02:00 -> 01:00.
  ['30 2 * * * Europe/Stockholm', '2026-03-27 12:00:00', 4],
  ['30 2 * * * Europe/Stockholm', '2026-10-23 12:00:00', 4],
  ['0 3 * * * Europe/Stockholm', '2026-03-27 12:00:00', 3],
  ['*/30 * * * * Europe/Stockholm', '2026-03-28 23:50:00', 5],
  ['*/30 * * * * Europe/Stockholm', '2026-10-24 23:50:00', 6],
  ['15 * * * * America/New_York', '2026-03-08 05:00:00', 3],
  ['15 * * * * America/New_York', '2026-11-01 04:00:00', 4],
  ['0 1 * * * America/New_York', '2026-10-31 12:00:00', 3],
  ['0,30 1 * * * America/New_York', '2026-10-31 12:00:00', 6],
  ['30 2 * * * America/New_York', '2026-03-07 12:00:00', 3],
  ['*/20 2 * * * America/New_York', '2026-03-07 12:00:00', 4],
  ['* * * * * America/New_York', '2026-03-08 06:58:00', 3],
  # No zone suffix: the scheduler process's zone (TZ) is the cron's, and fugit's "never the same
  # wall-clock time twice in a row" rule (gh-6) applies.
  ['15 * * * *', '2026-11-01 04:00:00', 4, 'America/New_York'],
  ['*/30 * * * *', '2026-11-01 04:50:00', 6, 'America/New_York'],
  ['0 1 * * *', '2026-10-31 12:00:00', 3, 'America/New_York'],
  ['30 2 * * *', '2026-03-07 12:00:00', 3, 'America/New_York'],
]

out = CASES.map do |cron, from, count, tz|
  ENV['TZ'] = tz || 'Etc/UTC'
  c = Fugit::Cron.do_parse(cron)
  t = EtOrbi.make_time(from + ' UTC')
  t = t.localtime if tz # rufus-scheduler's times are in the process's zone
  times = count.times.map { t = c.next_time(t); t.to_i }
  { 'cron' => cron, 'tz' => ENV['TZ'], 'from' => EtOrbi.make_time(from + ' UTC').to_i, 'next' => times,
    'next_utc' => times.map { |i| Time.at(i).utc.strftime('%F %T') } }
end
puts JSON.pretty_generate({
  'generator' => 'tests/fugit_oracle.rb',
  'fugit' => Fugit::VERSION, 'et_orbi' => EtOrbi::VERSION, 'tzinfo' => TZInfo::VERSION,
  'ruby' => RUBY_VERSION, 'tz' => ENV['TZ'],
  'cases' => out })
