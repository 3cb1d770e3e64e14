/* The node's roles: their names and which changes between them the node
 * makes (node.c carries them out). Pure: the unit tests link it alone. */
#include "config.h"

#include "stompd/node.h"

static const char *const names[NODE__ROLES] = {
    [NODE_STARTING] = "starting", [NODE_STANDALONE] = "standalone", [NODE_ELECTING] = "electing",
    [NODE_MASTER] = "master",     [NODE_SLAVE] = "slave",           [NODE_STEPPING_DOWN] = "stepping-down",
    [NODE_STOPPED] = "stopped",
};

#define T(to) (1u << (to))
static const unsigned allowed[NODE__ROLES] = {
    [NODE_STARTING] = T(NODE_STANDALONE) | T(NODE_ELECTING) | T(NODE_MASTER) | T(NODE_SLAVE) | T(NODE_STOPPED),
    [NODE_STANDALONE] = T(NODE_STOPPED),
    [NODE_ELECTING] = T(NODE_MASTER) | T(NODE_SLAVE) | T(NODE_STOPPED),
    /* a slave may be told to follow another master */
    [NODE_SLAVE] = T(NODE_SLAVE) | T(NODE_ELECTING) | T(NODE_STOPPED),
    [NODE_MASTER] = T(NODE_STEPPING_DOWN) | T(NODE_STOPPED),
    [NODE_STEPPING_DOWN] = T(NODE_ELECTING) | T(NODE_STOPPED),
    [NODE_STOPPED] = 0,
};
#undef T

const char *node_role_name(enum node_role r)
{
    return r < NODE__ROLES ? names[r] : "?";
}

bool node_transition_allowed(enum node_role from, enum node_role to)
{
    return from < NODE__ROLES && to < NODE__ROLES && (allowed[from] & (1u << to));
}
