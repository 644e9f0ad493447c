test_director_plan_SRCS := director/plan.c
