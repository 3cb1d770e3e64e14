/* The console's HTML pages (DESIGN §9), drawn from console.c's JSON views:
 * the broker's page (rates chart, queues, topics and connections with a
 * filter and pages, actions), a destination's page (its chart, its first
 * messages, moving them, sending), a follower's page (role, master, lag),
 * and the stylesheet and script they load (no inline script: the pages'
 * Content-Security-Policy allows only these). Everything a client chose
 * (names, headers, bodies) is escaped. */
#ifndef STOMPD_HTML_H
#define STOMPD_HTML_H

struct http_req;

void html_main(struct http_req *h);
void html_follower(struct http_req *h);
void html_destination(struct http_req *h);
void html_css(struct http_req *h);
void html_js(struct http_req *h);

#endif
