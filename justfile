# Recipes mirror ./dev (which needs nothing but bash and python3); `just` is optional.
default: test

setup:
    ./dev setup

demo *ARGS:
    ./dev demo {{ARGS}}

test *ARGS:
    ./dev test {{ARGS}}

bench *ARGS:
    ./dev bench {{ARGS}}
