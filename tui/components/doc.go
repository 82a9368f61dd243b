// Package components holds the console's widgets: a selectable list and a
// scrolling viewport that render only what is on screen (so a thousand
// sessions or a hundred thousand audit lines cost one screenful per frame),
// a one-line input, tabs and a dialog box. They know nothing of the daemon.
package components
